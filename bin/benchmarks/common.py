"""Helpers shared by the benchmark suites, kept apart from them: each suite module defines its
own absl flags (some with the same names), so only one suite can be imported per process, while
these are imported by tests and suites alike."""

import platform
import time

import numpy as np


def time_steps(step, n: int, warmup: int = 0) -> float:
  """Seconds of `n` calls of `step()` (which must block until done), after `warmup` untimed."""
  for _ in range(warmup):
    step()
  start = time.perf_counter()
  for _ in range(n):
    step()
  return time.perf_counter() - start


def check_results(metric: str, base: dict, res: dict) -> str:
  """"equal" when the distances match FAISS's (L2 to 1e-3 relative, Hamming exactly), else the
  recall@k of the returned ids against FAISS's (an approximate engine's figure)."""
  want, got = base["distances"], res["distances"]
  ok = (np.allclose(got, want, rtol=1e-3, atol=1e-3) if metric == "l2"
        else np.array_equal(got, want))
  if ok:
    return "equal"
  hits = sum(len(np.intersect1d(g, w)) for g, w in zip(res["indices"], base["indices"]))
  return f"recall {hits / base['indices'].size:.4f}"


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, else the platform's word for it."""
  try:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"
