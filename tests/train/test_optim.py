"""Optimizers and learning-rate schedules built from config sections."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cbir_jax.train import optim


def _lr(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


def test_constant_with_linear_warmup():
  s = optim.make_schedule({"learning_rate": 0.4, "schedule": "constant", "warmup_steps": 4}, 20)
  np.testing.assert_allclose(_lr(s, [0, 1, 2, 4, 10, 19]), [0, 0.1, 0.2, 0.4, 0.4, 0.4],
                             rtol=1e-6)


def test_cosine_reaches_end_factor():
  s = optim.make_schedule({"learning_rate": 1.0, "schedule": "cosine", "warmup_steps": 0,
                           "end_learning_rate_factor": 0.1}, 100)
  lr = _lr(s, [0, 50, 100])
  np.testing.assert_allclose(lr, [1.0, 0.55, 0.1], rtol=1e-5)


def test_step_schedule_drops_at_fractions_of_the_total():
  s = optim.make_schedule({"learning_rate": 1.0, "schedule": "step", "warmup_steps": 10,
                           "decay_boundaries": (0.5, 0.75), "decay_factor": 0.1}, 110)
  # Boundaries are fractions of all 110 steps, warmup included: drops at 55 and 82 (82.5 rounds
  # to even).
  np.testing.assert_allclose(_lr(s, [5, 10, 54, 55, 81, 82, 109]),
                             [0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)


@pytest.mark.parametrize("total", [150, 300, 900])
def test_peak_rate_holds_for_the_intended_fraction_of_a_run(total):
  # The AlexNet recipe (configs/alexnet_corel1k.py): 5 % warmup, 0.1x at 1/3 and 2/3 of the run.
  # The peak rate must hold from the end of warmup to a third of the run, whatever its length
  # (before issue 21: a 50-step warmup and boundaries on the post-warmup steps left a 150-step
  # run 33 steps at the peak instead of 42).
  config = {"learning_rate": 0.01, "schedule": "step", "warmup_fraction": 0.05,
            "decay_boundaries": (1 / 3, 2 / 3), "decay_factor": 0.1}
  lr = _lr(optim.make_schedule(config, total), range(total))
  warmup = round(0.05 * total)
  at_peak = np.flatnonzero(np.isclose(lr, 0.01, rtol=1e-6))
  assert at_peak[0] == warmup and at_peak[-1] == round(total / 3) - 1
  assert len(at_peak) == round(total / 3) - warmup  # one contiguous stretch
  np.testing.assert_allclose(len(at_peak) / total, 1 / 3 - 0.05, atol=1.5 / total)
  np.testing.assert_allclose(lr[:warmup], 0.01 * np.arange(warmup) / warmup, rtol=1e-5)
  np.testing.assert_allclose(lr[round(total / 3):round(2 * total / 3)], 1e-3, rtol=1e-5)
  np.testing.assert_allclose(lr[round(2 * total / 3):], 1e-4, rtol=1e-5)


def test_alexnet_recipes_keep_their_peak_on_the_heldout_run():
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  configs = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
  modules = {}
  for name in ("alexnet_corel1k", "experiments/corel_paper"):
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"),
                                                  os.path.join(configs, f"{name}.py"))
    modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modules[name])
  config = modules["alexnet_corel1k"].get_config("")
  # corel_heldout: 450 training images, batch 50, 15 epochs = 135 steps.
  # The config's recipe (Adam + cosine): 7 warmup steps (5 %) up to the peak, then the decay.
  lr = _lr(optim.make_schedule(config.optimizer, 135), range(135))
  assert config.optimizer.schedule == "cosine" and int(np.argmax(lr)) == 7
  assert lr[7] == pytest.approx(config.optimizer.learning_rate) and np.all(np.diff(lr[7:]) <= 0)
  # The paper's SGD recipe (alexnet_recipe=sgd_step) holds its peak from step 7 to a third.
  modules["experiments/corel_paper"].apply_alexnet_recipe(config, "sgd_step")
  opt = config.optimizer
  lr = _lr(optim.make_schedule(opt, 135), range(135))
  assert np.sum(np.isclose(lr, opt.learning_rate, rtol=1e-6)) == 45 - 7  # steps 7..44


def test_warmup_fraction_scales_with_the_run():
  config = {"learning_rate": 1.0, "schedule": "cosine", "warmup_fraction": 0.1}
  for total in (20, 200):
    s = optim.make_schedule(config, total)
    assert optim.warmup_length(config, total) == total // 10
    assert float(s(total // 10)) == pytest.approx(1.0)
    assert float(s(total // 20)) == pytest.approx(0.5)


@pytest.mark.parametrize("warmup, factor", [(0, 0.0), (7, 0.0), (7, 0.1), (0, 0.25)])
def test_cosine_is_optax_warmup_cosine_decay_on_the_total(warmup, factor):
  total = 60
  s = optim.make_schedule({"learning_rate": 0.3, "schedule": "cosine", "warmup_steps": warmup,
                           "end_learning_rate_factor": factor}, total)
  ref = optax.warmup_cosine_decay_schedule(0.0, 0.3, warmup, total, factor * 0.3)
  np.testing.assert_allclose(_lr(s, range(total + 3)), _lr(ref, range(total + 3)), rtol=1e-6,
                             atol=1e-9)


def test_demo_schedule_unchanged():
  # configs/digits.py (the demo's training fields): Adam, cosine, no warmup. Its schedule is
  # the one the README's demo table was made with, float for float.
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "digits.py")
  spec = importlib.util.spec_from_file_location("digits", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  opt = module.get_config("").optimizer
  for total in (1, 57, 200):
    before = optax.cosine_decay_schedule(float(opt.learning_rate), total, alpha=0.0)
    np.testing.assert_array_equal(_lr(optim.make_schedule(opt, total), range(total + 2)),
                                  _lr(before, range(total + 2)))


@pytest.mark.parametrize("bad, match", [
    ({"schedule": "linear"}, "schedule"),
    ({"warmup_steps": 10}, "warmup_steps"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"schedule": "step", "decay_boundaries": (0.8, 0.2)}, "decay_boundaries"),
    ({"schedule": "step", "warmup_steps": 5, "decay_boundaries": (0.5,)}, "inside the 5-step"),
    ({"warmup_steps": 2, "warmup_fraction": 0.1}, "not both"),
    ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ({"warmup_fraction": 0.95}, "warmup_steps"),
])
def test_bad_schedule_fields_raise(bad, match):
  with pytest.raises(ValueError, match=match):
    optim.make_schedule(bad, 10)


@pytest.mark.parametrize("bad, match", [
    ({"name": "lamb"}, "lamb"),
    ({"momentun": 0.9}, "momentun"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"momentum": 1.5}, "momentum"),
])
def test_bad_optimizer_fields_raise(bad, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(bad, 10)


_PARAMS = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
_GRADS = {"dense": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}}


def _one_update(config):
  tx = optim.make_optimizer(config, 10)
  updates, _ = tx.update(_GRADS, tx.init(_PARAMS), _PARAMS)
  return jax.tree.map(np.asarray, updates)


def test_sgd_l2_decay_applies_to_kernels_only():
  u = _one_update({"name": "sgd", "learning_rate": 0.1, "momentum": 0.0, "weight_decay": 0.5})
  np.testing.assert_allclose(u["dense"]["kernel"], -0.1 * (2.0 + 0.5), rtol=1e-6)
  np.testing.assert_allclose(u["dense"]["bias"], -0.1 * 2.0, rtol=1e-6)


def test_sgd_nesterov_matches_optax():
  config = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}
  ref = optax.sgd(0.1, momentum=0.9, nesterov=True)
  expected, _ = ref.update(_GRADS, ref.init(_PARAMS), _PARAMS)
  jax.tree.map(np.testing.assert_allclose, _one_update(config), jax.tree.map(np.asarray, expected))


def test_global_norm_clipping():
  # |grads| = sqrt(6 * 4); clipped to norm 1 then plain SGD with lr 1.
  u = _one_update({"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "grad_clip_norm": 1.0})
  norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(u)))
  np.testing.assert_allclose(norm, 1.0, rtol=1e-5)


def test_adamw_decoupled_decay_skips_biases():
  u = _one_update({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5})
  # First Adam step is lr * sign(g) (up to eps); AdamW adds lr * wd * w on kernels.
  np.testing.assert_allclose(u["dense"]["kernel"], -0.1 * (1.0 + 0.5), rtol=1e-5)
  np.testing.assert_allclose(u["dense"]["bias"], -0.1, rtol=1e-5)


def test_adam_from_configdict():
  import ml_collections  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3, "schedule": "cosine",
                                 "warmup_steps": 2, "grad_clip_norm": 1.0, "weight_decay": 1e-4})
  u = _one_update(c)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(u))
