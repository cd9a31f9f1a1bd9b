"""train_and_evaluate on digits: exact resume in a new process, restore, retention, model check."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from cbir_jax.train import checkpoint as checkpoint_lib
from cbir_jax.train import metric_log, trainer

REPO = Path(__file__).resolve().parents[2]
N = 30  # Stop after N steps; train to 2N (crossing the epoch boundary at 44).


def _config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 3
  c.distributed = "off"
  c.dataset = ml_collections.ConfigDict({"name": "digits", "manual_dir": "", "image_size": 16,
                                         "train_split": "train", "eval_split": "test"})
  # Dropout and augmentation make the result depend on the restored rng and data position.
  c.model = ml_collections.ConfigDict({"name": "lenet_l", "kwargs": {"lk_features": 16,
                                                                     "dropout_rate": 0.2}})
  c.batch_size = 32
  c.num_epochs = -1
  c.num_steps = 2 * N
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 3e-3, "weight_decay": 1e-4, "momentum": 0.9,
      "schedule": "cosine", "warmup_steps": 5, "grad_clip_norm": 1.0})
  c.label_smoothing = 0.1
  c.augment = True
  c.log_every_steps = 10
  c.eval_every_steps = 25
  c.checkpoint_every_steps = 10
  c.keep_checkpoints = 2
  return c


def _python(script: str, cache_dir: Path) -> dict:
  """Runs `script` in a new Python process; returns the JSON object it prints last.

  With JAX_LOG_COMPILES every trace of a jitted function is logged; the returned "traces" counts
  them for the train and eval steps (a retrace would mean a recompilation).

  The processes share a persistent XLA compilation cache (set through the environment, so this
  process is unaffected): the second and third runs load the identical programs instead of
  compiling them again; the executables, and so the numbers, are the same.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_LOG_COMPILES="1",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out["traces"] = {name: proc.stderr.count(f"Finished tracing + transforming {name} ")
                   + proc.stderr.count(f"Finished tracing {name} ")
                   for name in ("train_step", "eval_step")}
  return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A straight 2N-step run and an N-step stop (one process); a new process resumes to 2N."""
  root = tmp_path_factory.mktemp("trainer")
  straight, resumed = str(root / "straight"), str(root / "resumed")
  first = _python(f"""
    import json
    import sys
    import numpy as np
    sys.path.insert(0, {str(REPO)!r})
    from tests.train.test_trainer import _config
    from cbir_jax.train import trainer
    result = trainer.train_and_evaluate(_config(), {straight!r})
    stopped = trainer.train_and_evaluate(_config(), {resumed!r}, stop_at_step={N})
    kernel = lambda s: np.asarray(s.params["f6"]["kernel"])
    print(json.dumps({{"metrics": result.metrics, "stopped_step": int(stopped.state.step),
                      "stopped_differs": not np.array_equal(kernel(stopped.state),
                                                            kernel(result.state))}}))
  """, root / "xla_cache")
  second = _python(f"""
    import json
    from cbir_jax.train import trainer
    r = trainer.train_and_evaluate(trainer.load_config({resumed!r}), {resumed!r})
    print(json.dumps({{"metrics": r.metrics}}))
  """, root / "xla_cache")
  return {"straight": straight, "resumed": resumed, "metrics": first["metrics"],
          "traces": (first["traces"], second["traces"]),
          "stopped_step": first["stopped_step"], "stopped_differs": first["stopped_differs"],
          "resumed_metrics": second["metrics"]}


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_resume_in_new_process_is_bitwise_exact(runs):
  assert runs["stopped_step"] == N
  _, v_straight, _ = trainer.restore(runs["straight"])
  _, v_resumed, _ = trainer.restore(runs["resumed"])
  leaves_a, leaves_b = jax.tree.leaves(v_straight), jax.tree.leaves(v_resumed)
  assert len(leaves_a) == len(leaves_b) == 12  # 6 layers: kernel and bias
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The stopped run really differs from the end point (so the comparison is not vacuous).
  assert runs["stopped_differs"]
  assert runs["resumed_metrics"]["eval_accuracy"] == runs["metrics"]["eval_accuracy"]


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_steps_compile_once_per_run(runs):
  # Two train_and_evaluate calls in the first process, one in the second; every step after the
  # first (hundreds of calls, restored state included) reuses the compiled functions.
  assert runs["traces"] == ({"train_step": 2, "eval_step": 2}, {"train_step": 1, "eval_step": 1})


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_result_metrics_and_workdir(runs):
  m = runs["metrics"]
  assert m["steps"] == 2 * N
  assert 0.3 < m["eval_accuracy"] <= 1.0  # 60 steps beat chance (0.1) on held-out digits.
  assert m["images_per_sec"] > 0 and m["step_seconds"] > 0
  records = metric_log.read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  assert [r["step"] for r in records if "loss" in r] == [10, 20, 30, 40, 50, 60]
  assert [r["step"] for r in records if "eval_accuracy" in r] == [25, 50, 60]
  assert all({"accuracy", "images_per_sec", "step_seconds", "learning_rate"} <= set(r)
             for r in records if "loss" in r and r["step"] > 10)
  resumed = metric_log.read_metrics(os.path.join(runs["resumed"], "metrics.jsonl"))
  assert [r["step"] for r in resumed if "loss" in r] == [10, 20, 30, 40, 50, 60]


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_checkpoints_keep_latest_and_best(runs):
  ckpt = checkpoint_lib.Checkpointer(os.path.join(runs["straight"], "checkpoints"))
  try:
    steps = ckpt.all_steps()
  finally:
    ckpt.close()
  assert steps[-2:] == [50, 60]
  records = metric_log.read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  evals = {r["step"]: r["eval_accuracy"] for r in records if "eval_accuracy" in r}
  best = max(evals, key=lambda s: (evals[s], s))
  assert best in steps and len(steps) == len({50, 60, best})
  # orbax's atomic save leaves no temporary folders behind.
  assert not [p for p in os.listdir(os.path.join(runs["straight"], "checkpoints"))
              if "tmp" in p]
  # Each holds the grain iterator's state: the next batch is the checkpoint's step.
  for step in steps:
    with open(os.path.join(runs["straight"], "checkpoints", str(step), "data",
                           "process_0-of-1.json")) as f:
      assert json.load(f)["next_index"] == step


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_restore_gives_a_usable_model(runs):
  model, variables, config = trainer.restore(runs["straight"])
  assert config.model.name == "lenet_l" and config.num_steps == 2 * N
  x = np.zeros((3, 16, 16, 1), np.float32)
  logits, feats = model.apply(variables, x, train=False, features=("f6",))
  assert logits.shape == (3, 10) and feats["f6"].shape == (3, 84)


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_checkpoint_of_the_same_model_with_other_kwargs_is_a_clear_error(runs):
  # Another model name: tests/test_bad_inputs.py (the catalogue of bad inputs).
  config = _config()
  config.model.kwargs.lk_features = 24
  with pytest.raises(ValueError, match="lk_features"):
    trainer.train_and_evaluate(config, runs["straight"])


@pytest.mark.slow  # the `runs` fixture trains in three subprocesses
def test_data_state_of_another_step_is_a_clear_error(runs, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "copy"
  shutil.copytree(runs["straight"], workdir)
  state_file = workdir / "checkpoints" / "60" / "data" / "process_0-of-1.json"
  state_file.write_text(json.dumps(dict(json.loads(state_file.read_text()), next_index=7)))
  with pytest.raises(ValueError, match="holds a data iterator at step 7 but a model at step 60"):
    trainer.train_and_evaluate(_config(), str(workdir))


def test_config_validation_before_any_work():
  config = _config()
  config.model.kwargs = ml_collections.ConfigDict({"lk_features": 800})
  assert trainer.model_kwargs(config) == {"lk_features": 800}
  config.model.kwargs = ml_collections.ConfigDict({"k": 800})  # K has one name: lk_features.
  with pytest.raises(ValueError, match="model.kwargs .*'k'.* do not fit model lenet_l"):
    trainer.validate_config(config)
  for field, value, match in [("model.name", "lenet9", "unknown model 'lenet9'"),
                              ("dataset.name", "mnist", "unknown data set 'mnist'"),
                              ("dataset.image_size", -1, "image_size must be None .*got -1"),
                              ("dataset.image_size", 0, "image_size must be None .*got 0"),
                              ("dataset.eval_split", "validation", "unknown split 'validation'"),
                              ("optimizer.name", "rmsprop", "rmsprop"),
                              ("batch_size", 0, "batch_size")]:
    config = _config()
    section, _, key = field.rpartition(".")
    setattr(config[section] if section else config, key, value)
    with pytest.raises(ValueError, match=match):
      trainer.validate_config(config)
