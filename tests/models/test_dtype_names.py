"""registry.get_model takes dtype names ("bfloat16"), as config files give them."""

import jax
import jax.numpy as jnp
import pytest

from cbir_jax.models import registry


def test_dtype_name_becomes_the_jnp_dtype():
  model = registry.get_model("resnet_tiny", num_classes=3, dtype="bfloat16")
  assert model.dtype == jnp.bfloat16 and model.param_dtype == jnp.float32
  x = jnp.zeros((2, 16, 16, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits = model.apply(variables, x, train=False)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 3)
  assert registry.get_model("resnet_tiny", num_classes=3, dtype=jnp.bfloat16).dtype == jnp.bfloat16


def test_dfs_net_dtype_name_reaches_the_backbone():
  model = registry.get_model("dfs_resnet_tiny", num_classes=3, dtype="bfloat16")
  assert model.dtype == jnp.bfloat16 and model.backbone.dtype == jnp.bfloat16
  assert model.backbone.param_dtype == jnp.float32


@pytest.mark.parametrize("field", ["dtype", "param_dtype"])
def test_bad_dtype_name_is_named(field):
  with pytest.raises(ValueError, match=rf"{field}='bf16' is not a dtype name; valid names: "
                                       "float32, bfloat16, float16"):
    registry.get_model("resnet_tiny", num_classes=3, **{field: "bf16"})
  with pytest.raises(ValueError, match=rf"{field}='half'"):
    registry.get_model("dfs_resnet_tiny", num_classes=3, **{field: "half"})
