"""bin/index.py build | search | info on tiny .npy files, run as a subprocess."""

import pathlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.kernels import reference

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args):
  return subprocess.run([sys.executable, str(ROOT / "bin" / "index.py"), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)


def test_build_search_info(tmp_path, rng):
  bits = rng.random((40, 20)) < 0.5
  np.save(tmp_path / "bits.npy", bits)
  np.save(tmp_path / "ids.npy", np.arange(1000, 1040))
  np.save(tmp_path / "labels.npy", np.arange(40) % 3)
  out = tmp_path / "db.cbiridx"
  proc = _run("build", f"--features={tmp_path / 'bits.npy'}", f"--ids={tmp_path / 'ids.npy'}",
              f"--labels={tmp_path / 'labels.npy'}", "--metadata=model=lenet_l", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  assert "BinaryIndex with 40 rows" in proc.stdout
  np.save(tmp_path / "q.npy", bits[[5, 7]])
  proc = _run("search", f"--index={out}", f"--queries={tmp_path / 'q.npy'}", "--k=3",
              f"--out={tmp_path / 'res.npz'}")
  assert proc.returncode == 0, proc.stderr
  res = np.load(tmp_path / "res.npz")
  np.testing.assert_array_equal(res["I"][:, 0], [1005, 1007])  # each query finds itself
  np.testing.assert_array_equal(res["D"][:, 0], [0, 0])
  np.testing.assert_array_equal(res["L"], (res["I"] - 1000) % 3)
  proc = _run("info", f"--index={out}")
  assert proc.returncode == 0, proc.stderr
  assert "BinaryIndex, 40 rows, nbits=20" in proc.stdout and "model: 'lenet_l'" in proc.stdout
  proc = _run("search", f"--index={out}", f"--queries={tmp_path / 'q.npy'}", "--k=41")
  assert proc.returncode == 2 and "k must be in [1, 40] (n = database size), got k = 41" in proc.stderr
  proc = _run("info", f"--index={tmp_path / 'ids.npy'}")
  assert proc.returncode == 2 and "not a cbir_jax index file" in proc.stderr
  (tmp_path / "zero.npy").write_bytes(b"")
  proc = _run("build", f"--features={tmp_path / 'zero.npy'}", f"--out={tmp_path / 'z.idx'}")
  assert proc.returncode == 2 and f"{tmp_path / 'zero.npy'} is not a readable .npy" in proc.stderr
  assert not (tmp_path / "z.idx").exists()


def test_build_reads_sidecars_of_extract_and_hash_outputs(tmp_path, rng):
  from cbir_jax.features import extract
  from cbir_jax.index import load_index
  feats = rng.normal(size=(30, 6)).astype(np.float32)
  extract.save_features(tmp_path / "db.npy", feats, {"model": "lenet_l", "endpoint": "f6"},
                        labels=np.arange(30) % 4)
  out = tmp_path / "float.cbiridx"
  proc = _run("build", f"--features={tmp_path / 'db.npy'}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  assert "no provenance record" in proc.stdout  # save_features without a provenance record
  meta = load_index(str(out)).metadata
  assert meta["labels"] == (np.arange(30) % 4).tolist()  # from the .labels.npy sidecar

  proc = subprocess.run([sys.executable, str(ROOT / "bin" / "hash.py"),
                         f"--database={tmp_path / 'db.npy'}", "--bits=5",
                         f"--out_dir={tmp_path / 'hash'}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  codes = tmp_path / "hash" / "db_codes.npy"
  out = tmp_path / "codes.cbiridx"
  proc = _run("build", f"--features={codes}", "--nbits=5", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  index = load_index(str(out))
  assert index.nbits == 5 and index.metadata["labels"] == (np.arange(30) % 4).tolist()
  state = json.loads((tmp_path / "hash" / "encoder.json").read_text())
  # The float32 mean of 30 N(0, 1) values: a purely relative tolerance failed when a mean fell
  # near 0 (-3.5e-4 off by 1.4e-8, i.e. 4e-5 relative), hence an absolute term at float32 scale.
  want = feats[:, state["order"][:5]].astype(np.float64).mean(0)
  np.testing.assert_allclose(state["theta"], want, rtol=1e-5, atol=1e-6)
  (tmp_path / "hash" / "db_codes.json").write_text("{not json")
  proc = _run("build", f"--features={codes}", "--nbits=5", f"--out={tmp_path / 'x.idx'}")
  assert proc.returncode == 2 and "db_codes.json is not valid JSON" in proc.stderr
  assert not (tmp_path / "x.idx").exists()


def test_augment_writes_the_dba_as_a_cosine_index_and_keeps_the_source(tmp_path, rng):
  n, d = int(rng.integers(30, 80)), int(rng.integers(2, 24))
  x = (rng.standard_normal((n // 5 + 1, d))[rng.integers(0, n // 5 + 1, n)]
       + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  src, out = tmp_path / "db.cbiridx", tmp_path / "db_dba.cbiridx"
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  jobs.build_index(str(tmp_path / "x.npy"), str(src), ids=np.arange(n) + 500,
                   labels=np.arange(n) % 4, metadata={"model": "f6"})
  before = src.read_bytes()
  proc = _run("augment", f"--index={src}", "--k=3", "--alpha=2", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  assert f"a cosine FloatIndex with {n} rows" in proc.stdout
  assert src.read_bytes() == before   # the source is left as it was
  from cbir_jax.index import load_index  # pylint: disable=import-outside-toplevel
  aug = load_index(out)
  assert aug.normalize
  assert aug.metadata["augmentation"] == {"method": "dba", "k": 3, "alpha": 2.0,
                                          "source": "db.cbiridx"}
  assert aug.metadata["model"] == "f6" and aug.metadata["labels"] == list(np.arange(n) % 4)
  np.testing.assert_array_equal(aug.ids, np.arange(n) + 500)
  want = reference.expand(x, x, 3, 2.0, with_self=True)
  close = np.max(np.abs(aug.vectors - want), axis=1) < 1e-4
  assert close.mean() > 0.95, close   # all but rows where a float32 near-tie swaps a neighbour
  # A search of it L2-normalises the queries: a scaled copy of a row finds that row.
  np.save(tmp_path / "q.npy", 1000 * aug.vectors[[4, 9]])
  proc = _run("search", f"--index={out}", f"--queries={tmp_path / 'q.npy'}", "--k=2",
              f"--out={tmp_path / 'res.npz'}")
  assert proc.returncode == 0, proc.stderr
  res = np.load(tmp_path / "res.npz")
  np.testing.assert_array_equal(res["I"][:, 0], [504, 509])
  np.testing.assert_allclose(res["D"][:, 0], 0, atol=1e-5)
  proc = _run("info", f"--index={out}")
  assert "(cosine: unit rows, queries L2-normalised)" in proc.stdout
  assert "augmentation: {'method': 'dba', 'k': 3" in proc.stdout


def test_augment_refuses_bad_input_by_name(tmp_path, rng):
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import BinaryIndex, FloatIndex  # pylint: disable=import-outside-toplevel
  src, new = tmp_path / "db.cbiridx", tmp_path / "new.cbiridx"
  index = FloatIndex(5)
  index.add(rng.standard_normal((12, 5)).astype(np.float32))
  index.save(src)
  binary = BinaryIndex(32)
  binary.add(rng.integers(0, 2**32, (12, 1), dtype=np.uint32))
  binary.save(tmp_path / "bin.cbiridx")
  jobs.augment_index(str(src), str(tmp_path / "aug.cbiridx"), 2)
  for kwargs, message in [
      ({"k": 0}, "the augmentation's k must be in [1, 12] (the index size), got 0"),
      ({"k": 13}, "got 13"), ({"k": True}, "got True"),
      ({"alpha": -1.0}, "alpha must be a finite number >= 0, got -1.0"),
      ({"out": str(src)}, "must go to another file than its source"),
      ({"index_path": str(tmp_path / "bin.cbiridx")}, "needs a float index (it sums real vectors)"),
      ({"index_path": str(tmp_path / "aug.cbiridx")}, "is augmented already")]:
    args = {"index_path": str(src), "out": str(new), "k": 2, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
      jobs.augment_index(**args)
    assert not new.exists()
  # The launcher turns them into one line and exit 2, and wants --out.
  for flags, message in [(("--k=13",), "got 13"), (("--out=",), "--out is required for augment")]:
    proc = _run("augment", f"--index={src}", f"--out={new}", *flags)
    assert proc.returncode == 2, proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("index: ") and message in last, proc.stderr
    assert not new.exists()
