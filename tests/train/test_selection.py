"""Early stopping and checkpoint selection on the validation split (trainer), with resume."""

import json
import os

import ml_collections
import numpy as np
import pytest

from cbir_jax import jobs
from cbir_jax.train import metric_log, trainer
from tests.train.test_trainer import _config

EVERY = 10


def _selecting_config(**overrides) -> ml_collections.ConfigDict:
  c = _config()
  c.dataset.validation_fraction = 0.2
  c.dataset.eval_split = "validation"
  c.dataset.test_split = "test"
  c.num_steps = 200
  c.eval_every_steps = EVERY
  c.checkpoint_every_steps = 1000
  c.early_stopping_patience = 1
  # No evaluation can improve on the first by more than 1.0: the run must stop at the third
  # evaluation (the patience+1-th in a row without improvement), whatever the numbers are.
  c.early_stopping_min_delta = 1.0
  c.checkpoint_selection = "best"
  for key, value in overrides.items():
    c[key] = value
  return c


def _evaluations(workdir) -> dict[int, float]:
  records = metric_log.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return {int(r["step"]): float(r["eval_accuracy"]) for r in records if "eval_accuracy" in r}


def _reference_stop(accuracies: list[float], patience: int, min_delta: float) -> int:
  """Index of the evaluation at which training stops (flax's rule, written out), or -1."""
  best, count = None, 0
  for i, value in enumerate(accuracies):
    if best is None or value - best > min_delta:
      best, count = value, 0
    else:
      if count >= patience:
        return i
      count += 1
  return -1


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
  root = tmp_path_factory.mktemp("selection")
  straight, resumed = str(root / "straight"), str(root / "resumed")
  result = trainer.train_and_evaluate(_selecting_config(), straight)
  trainer.train_and_evaluate(_selecting_config(), resumed, stop_at_step=2 * EVERY)
  assert not os.path.exists(os.path.join(resumed, trainer.SELECTION_FILE))  # Not finished.
  again = trainer.train_and_evaluate(_selecting_config(), resumed)
  return {"straight": straight, "resumed": resumed, "result": result, "again": again}


def test_stops_by_flax_rule_and_selects_the_best_validation_checkpoint(stopped):
  metrics = stopped["result"].metrics
  evaluations = _evaluations(stopped["straight"])
  steps = sorted(evaluations)
  assert steps == [EVERY, 2 * EVERY, 3 * EVERY]  # Stopped long before num_steps=200.
  assert _reference_stop([evaluations[s] for s in steps], 1, 1.0) == 2
  assert metrics["steps"] == 3 * EVERY and metrics["stopped_early"] == 1.0
  best = max(evaluations.values())
  expected = min(s for s in steps if evaluations[s] == best)  # Earliest among equals.
  assert metrics["selected_step"] == expected
  assert metrics["eval_accuracy"] == pytest.approx(best)  # The returned state is the best one.
  assert int(stopped["result"].state.step) == expected
  assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_loss" in metrics
  with open(os.path.join(stopped["straight"], trainer.SELECTION_FILE), encoding="utf-8") as f:
    selection = json.load(f)
  assert selection == {"step": expected, "rule": "best", "metric": "eval_accuracy",
                       "stopped_early": True, "trained_steps": 3 * EVERY, "planned_steps": 200}


def test_resumed_run_stops_and_selects_as_the_straight_one(stopped):
  for key in ("steps", "selected_step", "stopped_early", "eval_accuracy", "test_accuracy"):
    assert stopped["again"].metrics[key] == pytest.approx(stopped["result"].metrics[key]), key
  assert _evaluations(stopped["resumed"]) == pytest.approx(_evaluations(stopped["straight"]))


def test_a_finished_early_stopped_run_does_not_train_again(stopped, tmp_path):
  workdir = stopped["resumed"]
  lines = len(metric_log.read_metrics(os.path.join(workdir, "metrics.jsonl")))
  result = trainer.train_and_evaluate(_selecting_config(), workdir)
  assert result.metrics["steps"] == 3 * EVERY
  assert result.metrics["selected_step"] == stopped["result"].metrics["selected_step"]
  assert len(metric_log.read_metrics(os.path.join(workdir, "metrics.jsonl"))) == lines


def test_restore_defaults_to_the_selected_checkpoint(stopped):
  selected = int(stopped["result"].metrics["selected_step"])
  restored = jobs.restore(stopped["straight"])
  assert restored.step == selected
  _, variables, _ = trainer.restore(stopped["straight"])
  _, last, _ = trainer.restore(stopped["straight"], step=3 * EVERY)
  expected = np.asarray(stopped["result"].state.params["f6"]["kernel"])
  np.testing.assert_array_equal(np.asarray(variables["params"]["f6"]["kernel"]), expected)
  if selected != 3 * EVERY:
    assert not np.array_equal(np.asarray(last["params"]["f6"]["kernel"]), expected)


def test_last_selection_without_early_stopping_keeps_the_old_behaviour(tmp_path):
  config = _config()
  config.num_steps = 2 * EVERY
  result = trainer.train_and_evaluate(config, str(tmp_path))
  assert result.metrics["selected_step"] == 2 * EVERY and result.metrics["stopped_early"] == 0.0
  assert trainer.selected_step(str(tmp_path)) == 2 * EVERY
  assert "test_accuracy" not in result.metrics


@pytest.mark.parametrize("overrides, match", [
    ({"eval_split": "test"}, "early_stopping_patience=1 and checkpoint_selection='best' decide"),
    ({"eval_split": "test", "early_stopping_patience": 0}, "checkpoint_selection='best' decide"),
    ({"early_stopping_patience": -1}, r"early_stopping_patience must be an int >= 0 \(0: off\), got -1"),
    ({"early_stopping_min_delta": -0.1}, "early_stopping_min_delta must be >= 0"),
    ({"checkpoint_selection": "first"}, "checkpoint_selection must be 'last' or 'best'"),
    ({"selection_metric": "test_accuracy"}, "selection_metric must be one of"),
    ({"test_split": "validation"}, "test_split reports a split the run never decides on"),
])
def test_decisions_on_query_or_test_images_are_refused(overrides, match):
  config = _selecting_config()
  for key, value in overrides.items():
    if key in ("eval_split", "test_split"):
      config.dataset[key] = value
    else:
      config[key] = value
  with pytest.raises(ValueError, match=match):
    trainer.validate_config(config)
