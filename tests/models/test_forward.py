"""Real forward passes of the tiny variants at 32x32: modes, batch norm, dropout, endpoints."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import registry

NUM_CLASSES = 5
# name -> (has batch norm, has dropout by default, classifier param path, endpoint feeding it)
TINY = {
    "alexnet_tiny": (False, True, ("fc8",), "fc7"),
    "resnet_tiny": (True, False, ("head",), "pool"),
    "mobilenet_v2_tiny": (True, True, ("head",), "pool"),
    "inception_v3_tiny": (True, True, ("head",), "pool"),
    "dfs_resnet_tiny": (True, False, ("head",), "dfs"),
}


@functools.cache
def _run(name: str, host_init) -> dict:
  """Eval and train outputs of one tiny model, each jitted once (cached per test session)."""
  model = registry.get_model(name, num_classes=NUM_CLASSES, small_input=True)
  x = jax.random.normal(jax.random.key(42), (4, 32, 32, 3))
  names = registry.endpoints(name)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = host_init(shapes, seed=0)
  # Eval with batch_stats mutable: the returned stats must equal the input ones.
  evaluate = jax.jit(lambda v, x: model.apply(v, x, features=names, mutable=["batch_stats"]))
  train = jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, features=names, rngs={"dropout": key}, mutable=["batch_stats"]))
  (logits, feats), eval_updates = evaluate(variables, x)
  return dict(
      model=model, x=x, variables=variables, logits=logits, feats=feats,
      eval_updates=eval_updates, again=evaluate(variables, x)[0][0],
      train_a=train(variables, x, jax.random.key(7)),
      train_a2=train(variables, x, jax.random.key(7)),
      train_b=train(variables, x, jax.random.key(8)))


@pytest.mark.parametrize("name", TINY)
def test_eval_outputs_and_endpoints_match_logits_pass(name, host_init):
  r = _run(name, host_init)
  _, _, head_path, feeding = TINY[name]
  assert r["logits"].shape == (4, NUM_CLASSES) and r["logits"].dtype == jnp.float32
  assert np.all(np.isfinite(r["logits"]))
  np.testing.assert_array_equal(r["logits"], r["again"])  # eval is deterministic
  assert set(r["feats"]) == set(registry.endpoints(name))
  # The endpoint feeding the classifier reproduces the logits: same forward pass.
  head = r["variables"]["params"]
  for key in head_path:
    head = head[key]
  np.testing.assert_allclose(r["feats"][feeding] @ head["kernel"] + head["bias"], r["logits"],
                             rtol=1e-4, atol=1e-4)
  if "fc8" in r["feats"]:
    np.testing.assert_array_equal(r["feats"]["fc8"], r["logits"])


@pytest.mark.parametrize("name", TINY)
def test_batch_norm_stats_change_only_in_train(name, host_init):
  r = _run(name, host_init)
  has_bn = TINY[name][0]
  (_, _), updates = r["train_a"]
  if not has_bn:
    assert "batch_stats" not in r["variables"] and not updates.get("batch_stats")
    return
  old, new = r["variables"]["batch_stats"], updates["batch_stats"]
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), old, new)
  assert all(jax.tree.leaves(changed))  # every BN layer updated its running stats
  # Eval mode uses running averages and leaves them untouched even when mutable.
  jax.tree.map(np.testing.assert_array_equal, r["eval_updates"]["batch_stats"], old)
  # Train mode normalises with batch statistics, so its logits differ from eval's.
  (train_logits, _), _ = r["train_a"]
  assert not np.allclose(train_logits, r["logits"])


@pytest.mark.parametrize("name", TINY)
def test_dropout_only_in_train(name, host_init):
  r = _run(name, host_init)
  has_dropout = TINY[name][1]
  (logits_a, _), _ = r["train_a"]
  (logits_a2, _), _ = r["train_a2"]
  (logits_b, _), _ = r["train_b"]
  np.testing.assert_array_equal(logits_a, logits_a2)  # same key -> same mask
  if has_dropout:
    assert not np.allclose(logits_a, logits_b)
  else:
    np.testing.assert_allclose(logits_a, logits_b, rtol=1e-6, atol=1e-6)
  # Eval needs no dropout rng: it ran in _run without one.


@pytest.mark.parametrize("name", ["alexnet_tiny", "resnet_tiny"])
def test_plain_logits_equal_logits_with_features(name, host_init):
  r = _run(name, host_init)
  plain = jax.jit(lambda v, x: r["model"].apply(v, x))(r["variables"], r["x"])
  np.testing.assert_array_equal(plain, r["logits"])


def test_unknown_endpoint_raises(host_init):
  r = _run("resnet_tiny", host_init)
  with pytest.raises(ValueError, match=r"valid endpoints: \['pool'\]"):
    r["model"].apply(r["variables"], r["x"], features=("fc7",))
  with pytest.raises(TypeError, match="features"):
    r["model"].apply(r["variables"], r["x"], features=(3,))


@pytest.mark.parametrize("name", registry.list_models())
def test_every_registered_model_builds_and_reports_endpoints(name):
  model = registry.get_model(name, num_classes=3)
  assert type(model).ENDPOINTS == registry.endpoints(name)
