"""bin/train.py killed with SIGKILL mid-run resumes from its last checkpoint, bitwise exactly.

One run is killed (`kill -9`) once a checkpoint beyond step N exists (while orbax writes the next
checkpoint, when the test catches that moment), then the same command is
started again: it must resume from the newest complete checkpoint and end with parameters
bitwise equal to those of an uninterrupted run of the same command in another workdir.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from cbir_jax.train import trainer

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 240        # several epochs of 44 steps: the resume crosses epoch boundaries
EVERY = 10         # checkpoint_every_steps
KILL_AFTER = 30    # kill once a checkpoint of a step >= this exists


def _command(workdir: Path) -> list[str]:
  return [sys.executable, str(REPO / "bin" / "train.py"),
          f"--config={REPO / 'configs' / 'digits.py'}:tiny", f"--workdir={workdir}",
          "--config.dataset.image_size=16", "--config.model.kwargs.lk_features=16",
          "--config.batch_size=32", f"--config.num_steps={STEPS}",
          f"--config.checkpoint_every_steps={EVERY}", "--config.keep_checkpoints=2",
          "--config.log_every_steps=10", "--config.augment=True",  # data depends on the step
          "--config.dataset.eval_split=", "--config.distributed=off"]


def _env(cache: Path) -> dict[str, str]:
  # A persistent compilation cache shared by the three processes: the second and third load
  # the programs the first compiled (same executables, so the same numbers).
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
              JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _complete_steps(workdir: Path) -> list[int]:
  """Steps of complete checkpoints (orbax renames `<step>` into place only when complete)."""
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir(
  ) else []


def _saving(workdir: Path) -> bool:
  """Whether a checkpoint is being written (an orbax temporary folder exists)."""
  return any("tmp" in p.name for p in (workdir / "checkpoints").iterdir())


def test_kill_9_then_restart_resumes_bitwise(tmp_path):
  env = _env(tmp_path / "xla_cache")
  killed, reference = tmp_path / "killed", tmp_path / "reference"

  log = open(tmp_path / "killed.log", "w")  # pylint: disable=consider-using-with
  victim = subprocess.Popen(_command(killed), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 240
  try:
    while not any(s >= KILL_AFTER for s in _complete_steps(killed)):
      assert victim.poll() is None, (
          f"training ended (exit {victim.returncode}) before a checkpoint of step >= "
          f"{KILL_AFTER}:\n{(tmp_path / 'killed.log').read_text()[-3000:]}")
      assert time.monotonic() < deadline, f"no checkpoint beyond step {KILL_AFTER} in 240 s"
      time.sleep(0.02)
    # Kill while the next checkpoint is being written when we catch one (orbax's temporary
    # folder exists), the harshest moment; otherwise between checkpoints.
    catch_until = time.monotonic() + 5
    while not _saving(killed) and victim.poll() is None and time.monotonic() < catch_until:
      time.sleep(0.002)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
  finally:
    if victim.poll() is None:
      victim.kill()
      victim.wait()
    log.close()
  assert victim.returncode == -signal.SIGKILL
  at_kill = _complete_steps(killed)
  assert STEPS not in at_kill, f"the run had finished before the kill: {at_kill}"
  _, at_last_checkpoint, _ = trainer.restore(str(killed))

  # The restart and the uninterrupted reference run side by side.
  resumed = subprocess.Popen(_command(killed), cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  ref = subprocess.run(_command(reference), cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
  out, err = resumed.communicate(timeout=300)
  assert ref.returncode == 0, ref.stderr[-3000:]
  assert resumed.returncode == 0, err[-3000:]
  assert f"trained lenet_l on digits for {STEPS} steps" in out

  match = re.search(r"resumed from \S+ at step (\d+)", err)
  assert match, f"the restart did not resume:\n{err[-3000:]}"
  start = int(match.group(1))
  assert start == max(at_kill), f"resumed at step {start}, newest complete checkpoint {at_kill}"
  assert _complete_steps(killed)[-1] == _complete_steps(reference)[-1] == STEPS

  _, got, got_config = trainer.restore(str(killed))
  _, want, _ = trainer.restore(str(reference))
  assert got_config.num_steps == STEPS
  got_leaves, got_tree = jax.tree.flatten(got)
  want_leaves, want_tree = jax.tree.flatten(want)
  assert got_tree == want_tree
  for a, b in zip(got_leaves, want_leaves):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), "parameters differ from the uninterrupted run"
  # The restarted run trained on from its checkpoint: the comparison covers real work.
  assert any(np.asarray(a).tobytes() != np.asarray(b).tobytes() for a, b in zip(
      got_leaves, jax.tree.leaves(at_last_checkpoint)))
