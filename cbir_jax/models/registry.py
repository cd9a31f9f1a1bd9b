"""Model registry: create any cbir_jax model by name (`get_model("dfs_inception_v3", ...)`)."""

import operator
import types
from collections.abc import Callable, Sequence
from typing import NamedTuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp

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
    # CPU-scale variants of the seed-002 families (docs/MODELS.md): same blocks, narrower,
    # stride-2 stems for 32x32 inputs; what a 2-core CPU trains on CIFAR-10's 50k in minutes.
    "resnet_cpu": (resnet.ResNetCPU, resnet.ResNet.ENDPOINTS),
    "inception_v3_cpu": (inception.InceptionV3CPU, inception.InceptionV3.ENDPOINTS),
    "mobilenet_v2_cpu": (mobilenet.MobileNetV2CPU, mobilenet.MobileNetV2.ENDPOINTS),
    "dfs_resnet_cpu": (dfs.dfs_resnet_cpu, dfs.DFSNet.ENDPOINTS),
    "dfs_inception_v3_cpu": (dfs.dfs_inception_v3_cpu, dfs.DFSNet.ENDPOINTS),
    "dfs_mobilenet_v2_cpu": (dfs.dfs_mobilenet_v2_cpu, dfs.DFSNet.ENDPOINTS),
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


# Dtype names a config may give for `dtype` / `param_dtype` (config values are strings).
DTYPE_NAMES: types.MappingProxyType = types.MappingProxyType({
    "float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16})
_DTYPE_FIELDS = ("dtype", "param_dtype")


def resolve_dtypes(kwargs: dict) -> dict:
  """`kwargs` with `dtype` / `param_dtype` names ("bfloat16") turned into jnp dtypes (a DFS-Net
  passes its own to its backbone); dtype objects pass through unchanged.

  Raises:
    ValueError: a name that is not one of DTYPE_NAMES, naming the field and the value.
  """
  out = dict(kwargs)
  for field in _DTYPE_FIELDS:
    value = out.get(field)
    if isinstance(value, str):
      if value not in DTYPE_NAMES:
        raise ValueError(f"model field {field}={value!r} is not a dtype name; valid names: "
                         f"{', '.join(DTYPE_NAMES)}")
      out[field] = DTYPE_NAMES[value]
  return out


def get_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
  """Creates the Linen module registered as `name`.

  Args:
    name: one of `list_models()`, e.g. "lenet_l".
    num_classes: number of output classes (>= 1).
    **kwargs: module fields, e.g. `lk_features=1400`, `activation="relu"`, `small_input=True`
      (all but LeNet-L), `aux_logits=True` (InceptionV3), `dtype=jnp.bfloat16` (or its name,
      "bfloat16", as a config gives it: `resolve_dtypes`); DFS-Nets take
      `small_input`, `dtype`, `param_dtype`, `backbone_kwargs`, `widths`, `layout`
      ("fig2" | "v1"), `compression`, `mid_width`, `bottlenecks`, `dropout_rate`.

  Returns:
    An unbound module: `model.init(rng, x, train=False)`, `model.apply(variables, x,
    train=False, features=None)` with `x: f32[b, h, w, c]` -> logits `f32[b, num_classes]`, or
    `(logits, {endpoint: f32[b, d]})` when `features` names endpoints.

  Raises:
    ValueError: unknown `name` (message lists the valid names), `num_classes < 1`, or a dtype
      name that is not one of DTYPE_NAMES.
    TypeError: a keyword that is not a field of the model.
  """
  constructor, _ = _lookup(name)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
  kwargs = resolve_dtypes(kwargs)
  try:
    return constructor(num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise TypeError(f"bad keyword for model {name!r}: {e}") from e


# --- Input-size guard -------------------------------------------------------------------------
# The rule: a model's LAST FEATURE MAP is the output of its last convolution (found by abstract
# evaluation: flax intercepts every nn.Conv call under jax.eval_shape; nothing is computed). A
# model whose features pool that map globally (every model but LeNet-L; DFS-Nets pool the DFS
# module's output, which keeps the backbone's map size) needs it at least 2x2, or the global pool
# reads one position. AlexNet max-pools it 3x3/2 once more before its adaptive 6x6 average pool,
# so it needs conv5 >= 5x5 (that pool then leaves >= 2x2; at 64x64 conv5 is 3x3, the pool leaves
# 1x1 and the adaptive pool copies one 256-vector 36 times). LeNet-L flattens its last map (S4,
# after C3 and a 2x2 pool) into L-K, keeping every position, so any C3 map of >= 2x2 is fine.
# Side of the last convolution's output each model needs; every other model: MIN_FEATURE_MAP.
MIN_FEATURE_MAP = 2
_MIN_LAST_CONV: types.MappingProxyType = types.MappingProxyType({
    "alexnet": 5, "alexnet_tiny": 5, "lenet_l": 2})


class InputSizeCheck(NamedTuple):
  """What `check_input_size` found for a model at one input size.

  Fields: `name`; `image_size` (h, w); `last_map` (h, w) of the last convolution's output;
  `required`: the side that map needs (see the rule above); `meaningful`: both sides >= it.
  """
  name: str
  image_size: tuple[int, int]
  last_map: tuple[int, int]
  required: int
  meaningful: bool


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
  """(h, w) from an int or a pair of positive ints (NumPy integers too)."""
  size = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
  try:
    if len(size) != 2 or any(isinstance(v, bool) for v in size):
      raise TypeError
    size = tuple(operator.index(v) for v in size)
  except TypeError:
    size = (0,)
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
  return size


def last_feature_map(name: str, image_size: int | Sequence[int], *, channels: int = 3,
                     **kwargs) -> tuple[int, int]:
  """Spatial size (h, w) of model `name`'s last convolution output for `image_size` inputs.

  Evaluated abstractly (`jax.eval_shape` of `model.init`, every `nn.Conv` call intercepted):
  nothing is allocated or compiled. `kwargs` are the model's fields (`small_input=True`, ...).

  Raises:
    ValueError: unknown `name`, or the model cannot take the input at all (its own size check,
      a shape error, or a zero-size map); the message names the model and the size.
  """
  h, w = _hw(image_size)
  kwargs.pop("num_classes", None)
  model = get_model(name, num_classes=2, **kwargs)
  maps = []

  def record(next_fun, args, kw, context):
    out = next_fun(*args, **kw)
    if context.method_name == "__call__" and isinstance(context.module, nn.Conv):
      maps.append(tuple(int(d) for d in out.shape[1:3]))
    return out

  x = jax.ShapeDtypeStruct((1, h, w, channels), jnp.float32)
  try:
    with nn.intercept_methods(record):
      jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  except (ValueError, TypeError) as e:
    raise ValueError(f"model {name!r} cannot take {h}x{w} inputs: {e}") from e
  if not maps or min(min(m) for m in maps) < 1:
    raise ValueError(f"model {name!r} at {h}x{w} produces an empty feature map "
                     f"(convolution outputs {maps})")
  return maps[-1]


def min_input_size(name: str, *, channels: int = 3, max_size: int = 4096, **kwargs) -> int:
  """Smallest square side s for which `check_input_size(name, s, ...)` is meaningful.

  Found by abstract evaluation (`last_feature_map`): doubling from 8, then bisection; assumes a
  larger input never gives a smaller map (true of every registered model). About a dozen
  `jax.eval_shape` calls, well under a second each; not cached.

  Raises:
    ValueError: unknown `name`, or no size up to `max_size` is enough.
  """
  def ok(side):
    try:
      return check_input_size(name, side, channels=channels, warn=False, **kwargs).meaningful
    except ValueError:
      return False

  lo, hi = 0, 8  # ok(lo) is False (side 0 never works), ok(hi) unknown
  while not ok(hi):
    lo, hi = hi, hi * 2
    if hi > max_size:
      raise ValueError(f"model {name!r}: no square input up to {max_size} keeps its last "
                       "feature map meaningful")
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if ok(mid) else (mid, hi)
  return hi


def check_input_size(name: str, image_size: int | Sequence[int], *, channels: int = 3,
                     strict: bool = False, warn: bool = True, **kwargs) -> InputSizeCheck:
  """The input-size guard: call it before any work with a config's model and image size.

  Checks that model `name` (with `kwargs`, its fields) at `image_size` inputs has a meaningful
  last feature map (the rule is in the comment above `MIN_FEATURE_MAP`: >= 2x2 where it is
  pooled globally; AlexNet's conv5 >= 5x5; LeNet-L any). Below the rule it logs a WARNING (absl)
  naming the model, the size, the map and the smallest square input that keeps it meaningful,
  or, with `strict=True`, raises.

  Args:
    name: a registered model name.
    image_size: the input's (height, width), or one int for a square.
    channels: input channels (1 for the digits, 3 otherwise).
    strict: raise ValueError instead of warning below the rule.
    warn: log the warning (False: only return the result).
    **kwargs: model fields, e.g. `small_input=True` (`num_classes` is ignored).

  Returns:
    An `InputSizeCheck`.

  Raises:
    ValueError: the model cannot take the input at all (it would produce nothing: its own size
      check, a shape error, a zero-size map), whatever `strict` says; below the rule with
      `strict=True`; unknown name or a bad `image_size`.
  """
  size = _hw(image_size)
  last = last_feature_map(name, size, channels=channels, **kwargs)
  required = _MIN_LAST_CONV.get(name, MIN_FEATURE_MAP)
  result = InputSizeCheck(name, size, last, required, min(last) >= required)
  if result.meaningful or not (strict or warn):
    return result
  smallest = min_input_size(name, channels=channels, **kwargs)
  message = (f"model {name!r} at {size[0]}x{size[1]} inputs: its last feature map is "
             f"{last[0]}x{last[1]}, below the {required}x{required} it needs to be meaningful "
             f"(docs/MODELS.md, input sizes); the smallest square input that keeps it is "
             f"{smallest}x{smallest}")
  if strict:
    raise ValueError(message)
  logging.warning("INPUT SIZE: %s", message)
  return result
