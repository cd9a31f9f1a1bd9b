"""Model registry: create any cbir_jax model by name (`get_model("dfs_inception_v3", ...)`)."""

import types
from collections.abc import Callable

import flax.linen as nn

from cbir_jax.models import alexnet, dfs, inception, lenet, mobilenet, resnet

# name -> (constructor taking num_classes and keyword fields, endpoint names). Read-only.
# The *_tiny entries are narrow, shallow variants for fast tests; they are not paper models.
_MODELS: types.MappingProxyType = types.MappingProxyType({
    "lenet_l": (lenet.LeNetL, lenet.LeNetL.ENDPOINTS),
    "alexnet": (alexnet.AlexNet, alexnet.AlexNet.ENDPOINTS),
    "resnet50": (resnet.ResNet50, resnet.ResNet.ENDPOINTS),
    "inception_v3": (inception.InceptionV3, inception.InceptionV3.ENDPOINTS),
    "mobilenet_v2": (mobilenet.MobileNetV2, mobilenet.MobileNetV2.ENDPOINTS),
    "dfs_resnet50": (dfs.dfs_resnet50, dfs.DFSNet.ENDPOINTS),
    "dfs_inception_v3": (dfs.dfs_inception_v3, dfs.DFSNet.ENDPOINTS),
    "dfs_mobilenet_v2": (dfs.dfs_mobilenet_v2, dfs.DFSNet.ENDPOINTS),
    "alexnet_tiny": (alexnet._AlexNetTiny, alexnet.AlexNet.ENDPOINTS),
    "resnet_tiny": (resnet._ResNetTiny, resnet.ResNet.ENDPOINTS),
    "inception_v3_tiny": (inception._InceptionV3Tiny, inception.InceptionV3.ENDPOINTS),
    "mobilenet_v2_tiny": (mobilenet._MobileNetV2Tiny, mobilenet.MobileNetV2.ENDPOINTS),
    "dfs_resnet_tiny": (dfs._dfs_resnet_tiny, dfs.DFSNet.ENDPOINTS),
    "dfs_inception_v3_tiny": (dfs._dfs_inception_v3_tiny, dfs.DFSNet.ENDPOINTS),
    "dfs_mobilenet_v2_tiny": (dfs._dfs_mobilenet_v2_tiny, dfs.DFSNet.ENDPOINTS),
})


def list_models() -> list[str]:
  """Returns the registered model names, sorted."""
  return sorted(_MODELS)


def _lookup(name: str) -> tuple[Callable[..., nn.Module], tuple[str, ...]]:
  if not isinstance(name, str) or name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; valid models: {list_models()}")
  return _MODELS[name]


def endpoints(name: str) -> tuple[str, ...]:
  """Returns the feature endpoints of model `name` (for `apply(..., features=...)`).

  Raises:
    ValueError: unknown `name`; the message lists the valid names.
  """
  return _lookup(name)[1]


def get_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
  """Creates the Linen module registered as `name`.

  Args:
    name: one of `list_models()`, e.g. "lenet_l".
    num_classes: number of output classes (>= 1).
    **kwargs: module fields, e.g. `lk_features=1400`, `activation="relu"`, `small_input=True`
      (all but LeNet-L), `aux_logits=True` (InceptionV3), `dtype=jnp.bfloat16`; DFS-Nets take
      `small_input`, `dtype`, `param_dtype`, `backbone_kwargs`, `widths`, `bottlenecks`,
      `dropout_rate`.

  Returns:
    An unbound module: `model.init(rng, x, train=False)`, `model.apply(variables, x,
    train=False, features=None)` with `x: f32[b, h, w, c]` -> logits `f32[b, num_classes]`, or
    `(logits, {endpoint: f32[b, d]})` when `features` names endpoints.

  Raises:
    ValueError: unknown `name` (message lists the valid names) or `num_classes < 1`.
    TypeError: a keyword that is not a field of the model.
  """
  constructor, _ = _lookup(name)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
  try:
    return constructor(num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise TypeError(f"bad keyword for model {name!r}: {e}") from e
