"""train_step / eval_step on a tiny conv + BatchNorm + dropout model (one compilation each)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cbir_jax.train import mesh as mesh_lib
from cbir_jax.train import optim, state as state_lib, steps


class TinyBN(nn.Module):
  """conv 4@3x3 -> BatchNorm -> relu -> global mean -> dropout -> dense."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = nn.Dropout(0.25, deterministic=not train)(x.mean((1, 2)))
    return nn.Dense(self.num_classes)(x)


SHAPE = (8, 6, 6, 2)


@pytest.fixture(scope="module")
def setup():
  mesh = mesh_lib.make_mesh()
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  tx = optim.make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, 100)
  create = jax.jit(lambda rng: state_lib.create_train_state(TinyBN(), tx, rng, (1,) + SHAPE[1:]),
                   out_shardings=rep)
  rs = np.random.RandomState(0)
  batch = {"image": rs.randn(*SHAPE).astype(np.float32),
           "label": (np.arange(SHAPE[0]) % 3).astype(np.int32)}
  return {"create": create, "train": steps.jit_train_step(rep, data, donate=False),
          "eval": steps.jit_eval_step(rep, data), "batch": mesh_lib.global_batch(batch, data),
          "host_batch": batch}


def test_cross_entropy_label_smoothing_formula():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  logp = jax.nn.log_softmax(logits)[0]
  target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
  got = steps.cross_entropy_loss(logits, jnp.array([0]), 0.1)
  np.testing.assert_allclose(got, [-(target * logp).sum()], rtol=1e-6)
  np.testing.assert_allclose(steps.cross_entropy_loss(logits, jnp.array([0])), [-logp[0]],
                             rtol=1e-6)


def test_state_layout(setup):
  state = setup["create"](jax.random.PRNGKey(0))
  assert state.step.dtype == jnp.int32 and not state.step.weak_type
  assert set(state.batch_stats["BatchNorm_0"]) == {"mean", "var"}
  assert state.rng.shape == (2,) and state.rng.dtype == jnp.uint32
  assert set(state.variables()) == {"params", "batch_stats"}


def test_train_step_matches_manual_gradient_and_updates_bn(setup):
  state = setup["create"](jax.random.PRNGKey(0))
  new, metrics = setup["train"](state, setup["batch"])
  b = setup["host_batch"]

  def loss_fn(params):
    logits, upd = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                 b["image"], train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.fold_in(state.rng, 0)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["label"]).mean(), upd

  (loss, upd), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.params)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  # First SGD-momentum step: params - lr * grads.
  jax.tree.map(lambda p, g, q: np.testing.assert_allclose(q, p - 0.1 * g, rtol=1e-5, atol=1e-6),
               state.params, grads, new.params)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6),
               upd["batch_stats"], new.batch_stats)
  assert int(new.step) == 1
  assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_training_fits_a_fixed_batch_without_recompiling(setup):
  state = setup["create"](jax.random.PRNGKey(1))
  first = None
  for _ in range(60):
    state, metrics = setup["train"](state, setup["batch"])
    first = float(metrics["loss"]) if first is None else first
  assert float(metrics["loss"]) < 0.8 * first
  assert setup["train"]._cache_size() == 1  # pylint: disable=protected-access


def test_dropout_key_depends_on_step(setup):
  s0 = setup["create"](jax.random.PRNGKey(2))
  a, _ = setup["train"](s0, setup["batch"])
  b, _ = setup["train"](s0.replace(step=s0.step + 1), setup["batch"])
  c, _ = setup["train"](s0, setup["batch"])
  assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.params),
                                                       jax.tree.leaves(b.params)))
  jax.tree.map(np.testing.assert_array_equal, a.params, c.params)  # deterministic


def test_eval_step_masked_sums(setup):
  state = setup["create"](jax.random.PRNGKey(0))
  mask = np.array([True] * 5 + [False] * 3)
  batch = dict(setup["host_batch"], mask=mask)
  sums = setup["eval"](state, mesh_lib.global_batch(batch, mesh_lib.batch_sharding(
      mesh_lib.make_mesh())))
  logits = state.apply_fn(state.variables(), batch["image"], train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  correct = np.asarray(jnp.argmax(logits, -1) == batch["label"])
  np.testing.assert_allclose(sums["loss_sum"], np.sum(np.asarray(losses)[mask]), rtol=1e-5)
  assert float(sums["correct"]) == correct[mask].sum()
  assert float(sums["count"]) == 5.0


def test_check_batch_size():
  mesh = mesh_lib.make_mesh()
  with pytest.raises(ValueError, match="batch_size must be a positive multiple"):
    mesh_lib.check_batch_size(0, mesh)
  mesh_lib.check_batch_size(4, mesh)


def test_initialize_distributed_modes():
  assert mesh_lib.initialize_distributed("off") is False
  with pytest.raises(ValueError, match="'sometimes'"):
    mesh_lib.initialize_distributed("sometimes")
