"""bin/search.py --query_features: a batched serving loop equal to one search, memory flat."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbir_jax.index import FloatIndex

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_serving_loop_matches_one_search_and_reports_rss(tmp_path, rng):
  index = FloatIndex(24)
  index.add(rng.standard_normal((3001, 24)).astype(np.float32), ids=np.arange(3001) * 7)
  index.save(tmp_path / "db.index")
  queries = rng.standard_normal((1050, 24)).astype(np.float32)
  np.save(tmp_path / "q.npy", queries)
  proc = subprocess.run(
      [sys.executable, str(REPO / "bin" / "search.py"), f"--index={tmp_path / 'db.index'}",
       f"--query_features={tmp_path / 'q.npy'}", "--k=7", "--batch_size=100",
       f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(tmp_path / "out" / "ranking.npz") as f:
    got_d, got_i = f["D"], f["I"]
  want_d, want_i = index.search(queries, 7)
  np.testing.assert_array_equal(got_i, want_i)  # padding of the last batch changes nothing
  np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
  match = re.search(r"after first batch ([\d.]+), end ([\d.]+)", proc.stdout)
  assert match, proc.stdout
  warm, end = float(match.group(1)), float(match.group(2))
  assert end - warm < 64, f"RSS grew {end - warm:.1f} MiB over 11 batches"


def test_query_and_query_features_are_exclusive(tmp_path):
  index = FloatIndex(4)
  index.add(np.eye(4, dtype=np.float32))
  index.save(tmp_path / "db.index")
  np.save(tmp_path / "q.npy", np.eye(4, dtype=np.float32))
  proc = subprocess.run(
      [sys.executable, str(REPO / "bin" / "search.py"), f"--index={tmp_path / 'db.index'}",
       f"--query_features={tmp_path / 'q.npy'}", f"--query={tmp_path}"],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0 and "not both" in proc.stderr


def test_query_expansion_from_the_command_line(tmp_path, rng):
  from cbir_jax.kernels import alpha_query_expansion  # pylint: disable=import-outside-toplevel
  index = FloatIndex(12)
  db = rng.standard_normal((301, 12)).astype(np.float32) * 4
  index.add(db, ids=np.arange(301) + 1000)
  index.save(tmp_path / "db.index")
  queries = rng.standard_normal((37, 12)).astype(np.float32)
  np.save(tmp_path / "q.npy", queries)
  proc = subprocess.run(
      [sys.executable, str(REPO / "bin" / "search.py"), f"--index={tmp_path / 'db.index'}",
       f"--query_features={tmp_path / 'q.npy'}", "--k=5", "--batch_size=10", "--expand=3",
       "--expand_alpha=2", f"--out={tmp_path / 'out'}"],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(tmp_path / "out" / "ranking.npz") as f:
    got_d, got_i = f["D"], f["I"]
  units = db / np.linalg.norm(db, axis=1, keepdims=True)
  expanded = np.asarray(alpha_query_expansion(queries, units, 3, alpha=2.0), np.float64)
  full = ((expanded[:, None, :] - units[None].astype(np.float64)) ** 2).sum(-1)
  order = np.argsort(full, axis=1, kind="stable")[:, :5]
  np.testing.assert_array_equal(got_i, order + 1000)
  np.testing.assert_allclose(got_d, np.take_along_axis(full, order, 1), atol=1e-5)
  for flag, message in (("--expand=-1", "--expand must be >= 0"),
                        ("--expand_alpha=-2", "--expand_alpha must be a finite number >= 0"),
                        ("--expand=400", r"must be in \[1, 301\]")):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bin" / "search.py"), f"--index={tmp_path / 'db.index'}",
         f"--query_features={tmp_path / 'q.npy'}", flag, f"--out={tmp_path / 'bad'}"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and re.search(message, proc.stderr), (flag, proc.stderr[-800:])
