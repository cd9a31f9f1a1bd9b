"""bin/benchmark.py search: a small run end to end (table, checks against FAISS) and bad flags."""

import pytest

from tests import benchmark_run


def _run(*args: str, timeout: int = 600):
  return benchmark_run.run_suite("search", *args, timeout=timeout)


def test_quick_run_with_two_processes_per_engine(tmp_path):
  out = tmp_path / "table.md"
  proc = _run("--quick", "--cases=l2_100k_d128,ham64_100k", "--engines=faiss,jax,jax_pure",
              "--processes=2", "--repeats=1", "--queries=50", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  # jax_pure (the pure-JAX kernels) runs for both cases.
  assert proc.stdout.count("(process 2/2)") == 6
  rows = [line for line in out.read_text().splitlines() if line.startswith("| l2_") or
          line.startswith("| ham")]
  assert len(rows) == 6
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 14, row
    assert cells[3] == "cpu" and cells[11] == "", row  # JAX_PLATFORMS=cpu: no GPU column
    assert float(cells[5].replace(",", "")) > 0, row  # the read-bound limit
    if cells[2] in ("jax", "jax_pure"):
      assert cells[13] == "equal", row  # distances equal to FAISS
      assert cells[6].endswith("x") and cells[7].endswith("x"), row  # both ratios
      assert float(cells[6][:-1]) > 0 and float(cells[7][:-1]) > 0


@pytest.mark.slow
def test_several_query_counts_one_table_each_and_serving(tmp_path):
  out = tmp_path / "table.md"
  proc = _run("--quick", "--cases=ham64_100k", "--engines=faiss,jax", "--repeats=1",
              "--queries=1,3", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = out.read_text()
  assert "Q=1," in text and "Q=3," in text and "plain read bandwidth" in text
  rows = [[c.strip() for c in l.strip("|").split("|")] for l in text.splitlines()
          if l.startswith("| ham")]
  assert len(rows) == 4 and all(r[13] == "equal" for r in rows if r[2] == "jax")
  out = tmp_path / "serving.md"
  proc = _run("--quick", "--cases=l2_100k_d128,ham64_100k", "--engines=faiss,jax,jax_pure",
              "--serving=12", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [[c.strip() for c in l.strip("|").split("|")] for l in out.read_text().splitlines()
          if l.startswith("| l2_") or l.startswith("| ham")]
  # jax_pure is no serving engine: faiss and our index on each case.
  assert sorted((r[0], r[2]) for r in rows) == [("ham64_100k", "faiss"), ("ham64_100k", "jax"),
                                                 ("l2_100k_d128", "faiss"),
                                                 ("l2_100k_d128", "jax")]
  for r in rows:
    assert float(r[3]) > 0 and float(r[4]) >= float(r[3]), r  # p50 <= p99
    if r[2] == "jax":
      assert r[7] == "equal" and r[6].endswith("x"), r


@pytest.mark.parametrize("flag,message", [
    ("--processes=0", "--processes must be >= 1"), ("--queries=1,0", "--queries must be >= 1"), ("--cases=l2_7", "unknown case 'l2_7'"),
    ("--engines=annoy", "unknown engine 'annoy'")])
def test_bad_flag_is_one_line(flag, message):
  proc = _run(flag, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("benchmark search: ") and message in lines[0]


def test_whole_matrix_engines_and_recall_of_an_approximate_one(tmp_path):
  out = tmp_path / "table.md"
  proc = _run("--quick", "--cases=l2_100k_d128,ham64_100k", "--engines=faiss,jax_naive,jax_approx",
              "--repeats=1", "--queries=40", "--k=7", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()
          if line.startswith("| l2_") or line.startswith("| ham")]
  # The whole-matrix engines are L2 only: faiss on both cases, the two others on L2.
  assert sorted((r[0], r[2]) for r in rows) == [
      ("ham64_100k", "faiss"), ("l2_100k_d128", "faiss"), ("l2_100k_d128", "jax_approx"),
      ("l2_100k_d128", "jax_naive")]
  checks = {r[2]: r[13] for r in rows if r[0] == "l2_100k_d128"}
  assert checks["jax_naive"] == "equal"
  # Exact on CPU (approx_min_k falls back to an exact top-k there) or a recall figure.
  assert checks["jax_approx"] == "equal" or float(checks["jax_approx"].split()[1]) >= 0.9


def test_check_reports_recall_when_distances_differ():
  import numpy as np
  from cbir_jax._bin.benchmarks import common
  base = {"distances": np.array([[1.0, 2.0], [1.0, 3.0]]), "indices": np.array([[4, 5], [6, 7]])}
  assert common.check_results("l2", base, dict(base)) == "equal"
  res = {"distances": np.array([[1.0, 2.5], [1.0, 3.0]]), "indices": np.array([[4, 9], [7, 6]])}
  assert common.check_results("l2", base, res) == "recall 0.7500"
