"""jobs.streaming: the streaming index build equals extraction of the decoded images, resumes
after a failure to the identical file, refuses other settings, and on the command line survives
`kill -9` and runs on 2 processes (slow: subprocesses)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbir_jax import jobs, query
from cbir_jax.data import sources
from cbir_jax.features import extract as extract_lib
from cbir_jax.index import FloatIndex
from cbir_jax.jobs import streaming
from tests.photo_files import make_photos

REPO = Path(__file__).resolve().parents[2]
DATASET = {"name": "image_folder", "split": "all", "seed": 0}


def _build(run, source, out, **kw):
  kw = {"chunk_size": 16, "batch_size": 8, "num_threads": 2, **kw}
  return streaming.build_index_streaming(run, "f6", source, str(out), image_shape=(16, 16, 1),
                                         dataset=dict(DATASET, manual_dir=source.root), **kw)


class FailingSource(sources.ImageFolderSource):
  """The folder, but reading record `fail_at` raises (a crash in the middle of the build)."""

  def __init__(self, root, fail_at):
    super().__init__(root)
    self.fail_at = fail_at

  def __getitem__(self, index):
    if index == self.fail_at:
      raise RuntimeError(f"simulated crash at record {index}")
    return super().__getitem__(index)


def test_build_matches_extraction_of_decoded_images(tiny_run, photos, tmp_path):
  run = jobs.restore(str(tiny_run))
  source = sources.ImageFolderSource(photos)
  built = _build(run, source, tmp_path / "db.cbiridx")
  assert built.skipped == ["c1/bad.jpg"] and built.computed == 40
  assert not os.path.exists(str(tmp_path / "db.cbiridx") + ".parts")
  index = FloatIndex.load(tmp_path / "db.cbiridx")
  paths = [p for p in (source._paths) if p != "c1/bad.jpg"]
  want_ids = [i for i, p in enumerate(source._paths) if p != "c1/bad.jpg"]
  np.testing.assert_array_equal(index.ids, want_ids)
  assert index.metadata["labels"] == [int(p[1]) for p in paths]
  assert index.metadata["class_names"] == ["c0", "c1", "c2"]
  assert index.metadata["skipped"] == ["c1/bad.jpg"]
  record = index.metadata["provenance"]
  assert record["sources"][0]["endpoint"] == "f6"
  assert record["dataset"]["image_shape"] == [16, 16, 1]
  images = np.stack([query.decode_image((photos / p).read_bytes(), (16, 16, 1)) for p in paths])
  want = extract_lib.extract(run.model, run.variables, images, "f6", batch_size=8)
  np.testing.assert_allclose(index.vectors, want, rtol=1e-5, atol=1e-6)
  # Searchable by image: a database photo finds itself first.
  searcher = query.ImageSearcher.open(str(tmp_path / "db.cbiridx"))
  d, i = searcher.search(searcher.decode((photos / paths[30]).read_bytes())[None], 2)
  assert i[0, 0] == want_ids[30] and d[0, 0] < 1e-6


def test_failed_build_resumes_to_the_identical_index(tiny_run, photos, tmp_path):
  run = jobs.restore(str(tiny_run))
  _build(run, sources.ImageFolderSource(photos), tmp_path / "whole.cbiridx")
  out = tmp_path / "resumed.cbiridx"
  with pytest.raises(RuntimeError, match="simulated crash at record 35"):
    _build(run, FailingSource(photos, 35), out)  # Chunks 0 and 1 complete, chunk 2 not.
  parts = str(out) + ".parts"
  assert sorted(n for n in os.listdir(parts) if n.startswith("chunk")) == [
      "chunk-000000.npz", "chunk-000001.npz"]
  with pytest.raises(ValueError, match="chunk_size"):
    _build(run, sources.ImageFolderSource(photos), out, chunk_size=8)
  built = _build(run, sources.ImageFolderSource(photos), out)
  assert built.resumed_chunks == 2 and built.computed == 40 - 32
  assert (tmp_path / "whole.cbiridx").read_bytes() == out.read_bytes()


def test_codes_index_holds_the_encoders_codes(tiny_run, photos, tmp_path):
  from cbir_jax.features import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import BinaryIndex  # pylint: disable=import-outside-toplevel
  run = jobs.restore(str(tiny_run))
  plain = _build(run, sources.ImageFolderSource(photos), tmp_path / "a.cbiridx").index
  encoder = encoder_lib.HashEncoder(16, selection="first").fit(plain.vectors)
  built = _build(run, sources.ImageFolderSource(photos), tmp_path / "b.cbiridx",
                 encoder=encoder, codes_out=str(tmp_path / "b_codes.cbiridx"))
  codes = BinaryIndex.load(tmp_path / "b_codes.cbiridx")
  assert codes.nbits == 16 and len(codes) == 39 == len(built.codes_index)
  np.testing.assert_array_equal(codes.codes, encoder.encode(plain.vectors))
  np.testing.assert_array_equal(codes.ids, plain.ids)
  assert codes.metadata["provenance"]["encoder"] == encoder.state()
  with pytest.raises(ValueError, match="give both encoder and codes_out"):
    _build(run, sources.ImageFolderSource(photos), tmp_path / "c.cbiridx", encoder=encoder)


def test_input_shape_of_a_run_and_of_imported_weights(tiny_run):
  run = jobs.restore(str(tiny_run))
  assert streaming.input_shape_of(run, None) == (16, 16, 1)  # The checkpointed input shape.
  assert streaming.input_shape_of(run, (24, 20)) == (24, 20, 1)
  weights = jobs.Restored(run.model, run.variables, "lenet_l", weights={"path": "w"})
  assert streaming.input_shape_of(weights, (32, 32)) == (32, 32, 3)
  with pytest.raises(ValueError, match="imported weights need the image size"):
    streaming.input_shape_of(weights, None)


def test_bad_sizes_are_refused(tiny_run, photos, tmp_path):
  run = jobs.restore(str(tiny_run))
  with pytest.raises(ValueError, match=r"chunk_size \(12\) must be a multiple of batch_size"):
    _build(run, sources.ImageFolderSource(photos), tmp_path / "x.cbiridx", chunk_size=12)
  with pytest.raises(ValueError, match="'fc7' is not an endpoint of lenet_l"):
    streaming.build_index_streaming(run, "fc7", sources.ImageFolderSource(photos),
                                    str(tmp_path / "x.cbiridx"), image_shape=(16, 16, 1),
                                    dataset=DATASET)


# ------------------------------------------------------------------------- command line (slow)


def _command(run_dir, folder, out, chunk_size=8):
  return [sys.executable, str(REPO / "bin" / "index.py"), "build", f"--images={folder}",
          f"--train_workdir={run_dir}", "--endpoint=f6", f"--out={out}",
          f"--chunk_size={chunk_size}", "--batch_size=8", "--decode_threads=2"]


def _env(**extra):
  return dict(os.environ, JAX_PLATFORMS="cpu", CBIR_JAX_MALLOC_TUNING="0", **extra)


@pytest.mark.slow
def test_cli_killed_with_sigkill_resumes_to_the_identical_index(tiny_run, tmp_path):
  folder = make_photos(tmp_path / "photos", 200, size=(160, 160))  # 601 files, ~76 chunks
  whole = tmp_path / "whole.cbiridx"
  proc = subprocess.run(_command(tiny_run, folder, whole), env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / "killed.cbiridx"
  parts = Path(str(out) + ".parts")
  victim = subprocess.Popen(_command(tiny_run, folder, out), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
      if parts.is_dir() and len(list(parts.glob("chunk-*.npz"))) >= 3:
        break
      time.sleep(0.005)
    assert victim.poll() is None, "the build ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
  finally:
    if victim.poll() is None:
      victim.kill()
  assert not out.exists()
  done_before = len(list(parts.glob("chunk-*.npz")))
  assert 3 <= done_before < 76
  proc = subprocess.run(_command(tiny_run, folder, out), env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resumed" in proc.stdout and "1 unreadable image(s) skipped" in proc.stdout
  assert whole.read_bytes() == out.read_bytes()
  assert not parts.exists()


@pytest.mark.slow
def test_cli_two_processes_build_the_single_process_index(tiny_run, photos, tmp_path):
  # Two CPU devices per process: each process also extracts over a 2-device mesh.
  devices = "--xla_force_host_platform_device_count=2"
  single = tmp_path / "single.cbiridx"
  proc = subprocess.run(_command(tiny_run, photos, single), env=_env(XLA_FLAGS=devices),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  out = tmp_path / "two.cbiridx"
  procs = [subprocess.Popen(
      _command(tiny_run, photos, out), env=_env(
          JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
          JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid), XLA_FLAGS=devices),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pid in range(2)]
  try:
    results = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (stdout, stderr) in zip(procs, results):
    assert p.returncode == 0, stderr[-3000:]
  assert "wrote FloatIndex with 39 rows" in results[0][0]
  assert "process 0 merged" in results[1][0]
  assert single.read_bytes() == out.read_bytes()


@pytest.mark.slow
def test_cli_bad_streaming_flags_fail_in_one_line(tiny_run, photos, tmp_path):
  cases = [
      ([f"--images={photos}", "--features=x.npy"], "not both"),
      ([f"--images={photos}"], "--train_workdir (a training run) or --weights"),
      ([f"--images={tmp_path / 'missing' / 'dir'}", f"--train_workdir={tiny_run}",
        "--endpoint=f6"], "is not a folder"),
      ([f"--images={photos}", f"--train_workdir={tiny_run}", "--endpoint=f6",
        "--chunk_size=100"], "chunk_size (100) must be a multiple of batch_size (256)"),
  ]
  for flags, message in cases:
    proc = subprocess.run([sys.executable, str(REPO / "bin" / "index.py"), "build",
                           f"--out={tmp_path / 'x.cbiridx'}", *flags], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr[-2000:])



@pytest.mark.slow
@pytest.mark.data
def test_cli_builds_from_a_tfds_set_stored_as_array_record(tiny_run, tmp_path):
  """Corel-1K of ../shared/datasets prepared by our builder as ArrayRecord, indexed by name."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from cbir_jax import config_util  # pylint: disable=import-outside-toplevel
  import cbir_jax.data.builders  # pylint: disable=import-outside-toplevel,unused-import
  root = config_util.shared_dataset("corel1k")
  if not root:
    pytest.skip("real data not found: ../shared/datasets/corel1k (set CBIR_SHARED_DATASETS)")
  data_dir = tmp_path / "tfds"
  tfds.builder("corel1k", data_dir=str(data_dir), file_format="array_record"
               ).download_and_prepare(download_config=tfds.download.DownloadConfig(
                   manual_dir=root))
  source = sources.TfdsSource("corel1k", "train", data_dir=str(data_dir))
  assert len(source) == 1000
  record = source[17]
  np.testing.assert_array_equal(
      query.decode_image(record["encoded"]),
      query.decode_image((Path(root) / record["path"]).read_bytes()))
  out = tmp_path / "corel.cbiridx"
  command = _command(tiny_run, "corel1k", out, chunk_size=256) + [  # The last flag wins.
      "--batch_size=64", f"--data_dir={data_dir}", "--split=train"]
  proc = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  index = FloatIndex.load(out)
  assert len(index) == 1000 and index.metadata["skipped"] == []
  assert sorted(index.ids.tolist()) == sorted(source[i]["id"] for i in range(1000))
  assert index.metadata["provenance"]["dataset"]["name"] == "corel1k"


def test_image_search_with_query_expansion(tiny_run, photos, tmp_path):
  """--expand through ImageSearcher: the query's features, expanded over the unit database
  rows, ranked among them; a binary index and a bad k are refused by name."""
  from cbir_jax.index import BinaryIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import alpha_query_expansion  # pylint: disable=import-outside-toplevel
  run = jobs.restore(str(tiny_run))
  _build(run, sources.ImageFolderSource(photos), tmp_path / "db.cbiridx")
  plain = query.ImageSearcher.open(str(tmp_path / "db.cbiridx"))
  searcher = query.ImageSearcher.open(str(tmp_path / "db.cbiridx"), expand=2)
  image = searcher.decode((photos / "c0" / "0003.jpg").read_bytes())[None]
  feats = plain.features(image)
  vectors = plain.index.vectors
  units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  expanded = np.asarray(alpha_query_expansion(feats, units, 2))
  d, i = searcher.search(image, 4)
  full = ((expanded[:, None, :] - units[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(i[0], plain.index.ids[np.argsort(full[0], kind="stable")[:4]])
  np.testing.assert_allclose(d[0], np.sort(full[0])[:4], atol=1e-5)
  result = query.search_images(str(tmp_path / "db.cbiridx"), str(photos / "c0" / "0003.jpg"), 4,
                               str(tmp_path / "out"), expand=2)
  np.testing.assert_array_equal(result.ids, i)
  with pytest.raises(ValueError, match=r"query expansion's k must be in \[1, 39\].*got 40"):
    query.ExpandedSearch(plain.index, 40)
  with pytest.raises(ValueError, match="needs a float index.*got a BinaryIndex"):
    query.ExpandedSearch(BinaryIndex(32), 1)
  with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
    query.ExpandedSearch(plain.index, 2, alpha=-1.0)


def test_image_search_on_an_augmented_index(tiny_run, photos, tmp_path):
  """cbir-index augment's output is searched by image like its source: the query's features
  L2-normalised and ranked among the DBA rows; --expand on it uses those rows in place."""
  from cbir_jax.kernels import alpha_query_expansion  # pylint: disable=import-outside-toplevel
  run = jobs.restore(str(tiny_run))
  _build(run, sources.ImageFolderSource(photos), tmp_path / "db.cbiridx")
  jobs.augment_index(str(tmp_path / "db.cbiridx"), str(tmp_path / "dba.cbiridx"), 3)
  plain = query.ImageSearcher.open(str(tmp_path / "db.cbiridx"))
  searcher = query.ImageSearcher.open(str(tmp_path / "dba.cbiridx"))
  assert searcher.index.normalize and searcher.class_names == plain.class_names
  image = searcher.decode((photos / "c1" / "0002.jpg").read_bytes())[None]
  feats = plain.features(image).astype(np.float64)
  q = feats / np.linalg.norm(feats)
  rows = searcher.index.vectors.astype(np.float64)
  full = ((q[:, None, :] - rows[None]) ** 2).sum(-1)
  d, i = searcher.search(image, 5)
  np.testing.assert_array_equal(i[0], searcher.index.ids[np.argsort(full[0], kind="stable")[:5]])
  np.testing.assert_allclose(d[0], np.sort(full[0])[:5], atol=1e-5)
  expanded = query.ImageSearcher.open(str(tmp_path / "dba.cbiridx"), expand=2)
  assert expanded._expanded.unit_index is expanded.index  # no second copy of the rows
  want = np.asarray(alpha_query_expansion(plain.features(image), rows.astype(np.float32), 2))
  full = ((want[:, None, :] - rows[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(expanded.search(image, 4)[1][0],
                                searcher.index.ids[np.argsort(full[0], kind="stable")[:4]])
