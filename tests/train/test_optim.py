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


def test_step_schedule_drops_at_fractions_after_warmup():
  s = optim.make_schedule({"learning_rate": 1.0, "schedule": "step", "warmup_steps": 10,
                           "decay_boundaries": (0.5, 0.75), "decay_factor": 0.1}, 110)
  # Post-warmup length 100: drops at warmup + 50 and warmup + 75.
  np.testing.assert_allclose(_lr(s, [5, 10, 59, 60, 84, 85, 109]),
                             [0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)


@pytest.mark.parametrize("bad, match", [
    ({"schedule": "linear"}, "schedule"),
    ({"warmup_steps": 10}, "warmup_steps"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"schedule": "step", "decay_boundaries": (0.8, 0.2)}, "decay_boundaries"),
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
