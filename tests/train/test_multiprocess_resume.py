"""Two gloo processes: each saves its grain iterator state with the checkpoint, and a run
stopped at step 4 and resumed ends bitwise equal to a straight run (slow: subprocesses)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from cbir_jax.train import trainer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
  import sys
  from tests.train.test_trainer import _config
  from cbir_jax.train import trainer
  c = _config()
  c.distributed, c.num_steps, c.checkpoint_every_steps = "auto", 8, 4
  c.dataset.eval_split = ""
  trainer.train_and_evaluate(c, sys.argv[1], stop_at_step=int(sys.argv[2]) or None)
""")


def _train_two_processes(workdir: Path, stop_at_step: int) -> None:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, "-c", _SCRIPT, str(workdir), str(stop_at_step)], cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid), CBIR_JAX_MALLOC_TUNING="0"),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pid in range(2)]
  try:
    for proc in procs:
      _, err = proc.communicate(timeout=300)
      assert proc.returncode == 0, err[-3000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()


def test_two_process_run_saves_each_iterator_and_resumes_bitwise(tmp_path):
  _train_two_processes(tmp_path / "straight", 0)
  _train_two_processes(tmp_path / "resumed", 4)
  for pid in range(2):
    state = tmp_path / "resumed" / "checkpoints" / "4" / "data" / f"process_{pid}-of-2.json"
    assert json.loads(state.read_text())["next_index"] == 4
  _train_two_processes(tmp_path / "resumed", 0)
  straight = trainer.restore(str(tmp_path / "straight"))[1]
  resumed = trainer.restore(str(tmp_path / "resumed"))[1]
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
