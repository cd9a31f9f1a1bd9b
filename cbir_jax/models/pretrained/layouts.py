"""Where each source tensor goes in our models: torchvision names, Keras layer order, layouts."""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Keras 3 numbers a model's layers of one class in `model.layers` order, which for InceptionV3 is
# topological, not creation order: position i of its conv (and batch-norm) layers is creation
# (= our call) number _KERAS_INCEPTION_ORDER[i]. Legacy .h5 files list layers in the same order.
_KERAS_INCEPTION_ORDER = (
    0, 1, 2, 3, 4, 8, 6, 9, 5, 7, 10, 11, 15, 13, 16, 12, 14, 17, 18, 22, 20, 23, 19, 21, 24, 25,
    27, 28, 26, 29, 34, 35, 31, 36, 32, 37, 30, 33, 38, 39, 44, 45, 41, 46, 42, 47, 40, 43, 48, 49,
    54, 55, 51, 56, 52, 57, 50, 53, 58, 59, 64, 65, 61, 66, 62, 67, 60, 63, 68, 69, 72, 73, 70, 74,
    71, 75, 80, 77, 81, 78, 79, 82, 83, 76, 84, 89, 86, 90, 87, 88, 91, 92, 85, 93)


def trace_layers(model: nn.Module, size: int) -> tuple[list[tuple[tuple[str, ...], str]], Any]:
  """Our conv / depthwise / bn / dense modules in call order, and the variables' shapes."""
  calls = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__":
      if isinstance(module, nn.Conv):
        calls.append((module.path, "depthwise" if module.feature_group_count > 1 else "conv"))
      elif isinstance(module, nn.BatchNorm):
        calls.append((module.path, "bn"))
      elif isinstance(module, nn.Dense):
        calls.append((module.path, "dense"))
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  with nn.intercept_methods(record):
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return calls, shapes


def torch_names(model_name: str, model: nn.Module) -> list[tuple[str, str]]:
  """torchvision module names, each with its kind, in the call order of our module."""
  if model_name == "alexnet":
    return [(f"features.{i}", "conv") for i in (0, 3, 6, 8, 10)] + [
        (f"classifier.{i}", "dense") for i in (1, 4, 6)]
  names = []
  conv_bn = lambda p: names.extend([(f"{p}.conv", "conv"), (f"{p}.bn", "bn")])
  if model_name == "resnet50":
    names += [("conv1", "conv"), ("bn1", "bn")]
    for i, blocks in enumerate(model.stage_sizes):
      for j in range(blocks):
        p = f"layer{i + 1}.{j}"
        for k in (1, 2, 3):
          names += [(f"{p}.conv{k}", "conv"), (f"{p}.bn{k}", "bn")]
        if j == 0:
          names += [(f"{p}.downsample.0", "conv"), (f"{p}.downsample.1", "bn")]
    return names + [("fc", "dense")]
  if model_name == "mobilenet_v2":
    names += [("features.0.0", "conv"), ("features.0.1", "bn")]
    k = 1
    for t, _, n, _ in model.settings:
      for _ in range(n):
        p = f"features.{k}.conv"
        if t == 1:
          names += [(f"{p}.0.0", "depthwise"), (f"{p}.0.1", "bn"), (f"{p}.1", "conv"),
                    (f"{p}.2", "bn")]
        else:
          names += [(f"{p}.0.0", "conv"), (f"{p}.0.1", "bn"), (f"{p}.1.0", "depthwise"),
                    (f"{p}.1.1", "bn"), (f"{p}.2", "conv"), (f"{p}.3", "bn")]
        k += 1
    return names + [(f"features.{k}.0", "conv"), (f"features.{k}.1", "bn"),
                    ("classifier.1", "dense")]
  # inception_v3
  for p in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"):
    conv_bn(p)
  blocks = (
      (("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("branch1x1", "branch5x5_1", "branch5x5_2",
       "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool")),
      (("Mixed_6a",), ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")),
      (("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"), ("branch1x1", "branch7x7_1",
       "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3",
       "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool")),
      (("Mixed_7a",), ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2",
       "branch7x7x3_3", "branch7x7x3_4")),
      (("Mixed_7b", "Mixed_7c"), ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b",
       "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b",
       "branch_pool")))
  for mixed, branches in blocks:
    for m in mixed:
      for b in branches:
        conv_bn(f"{m}.{b}")
  return names + [("fc", "dense")]


def torch_tensors(name: str, kind: str, state: Mapping, fc6_hwc=None) -> dict:
  """{(collection, leaf): (source name, array in our layout, file shape)}, one torch module."""
  roles = {"bn": (("weight", "params", "scale"), ("bias", "params", "bias"),
                  ("running_mean", "batch_stats", "mean"), ("running_var", "batch_stats", "var"))
           }.get(kind, (("weight", "params", "kernel"), ("bias", "params", "bias")))
  out = {}
  for suffix, collection, leaf in roles:
    key = f"{name}.{suffix}"
    if key not in state:
      continue
    w = np.asarray(state[key])
    file_shape = w.shape
    if leaf == "kernel" and kind == "dense" and w.ndim == 2:
      if fc6_hwc is not None and w.shape[1] == int(np.prod(fc6_hwc)):
        # torch flattens the pooled map as (c, h, w), we as (h, w, c): permute fc6's inputs.
        h, wd, c = fc6_hwc
        w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
      w = w.T
    elif leaf == "kernel" and w.ndim == 4:  # (out, in / groups, kh, kw) -> (kh, kw, in / g, out)
      w = w.transpose(2, 3, 1, 0)
    out[(collection, leaf)] = (key, w, file_shape)
  return out


_KERAS_ROLES = {"kernel": ("params", "kernel"), "depthwise_kernel": ("params", "kernel"),
                "bias": ("params", "bias"), "gamma": ("params", "scale"),
                "beta": ("params", "bias"), "moving_mean": ("batch_stats", "mean"),
                "moving_variance": ("batch_stats", "var")}


def keras_tensors(name: str, roles: Mapping[str, np.ndarray]) -> dict:
  out = {}
  for role, w in roles.items():
    w = np.asarray(w)
    file_shape = w.shape
    if role == "depthwise_kernel" and w.ndim == 4:  # (kh, kw, c, 1) -> (kh, kw, 1, c)
      w = w.transpose(0, 1, 3, 2)
    out[_KERAS_ROLES.get(role, ("?", role))] = (f"{name}/{role}", w, file_shape)
  return out


def keras_order(model_name: str, calls: list, kind: str) -> list:
  """Our modules of one kind, reordered into Keras' model.layers order."""
  ours = [path for path, k in calls if k == kind]
  if model_name == "inception_v3" and kind in ("conv", "bn") and len(ours) == len(
      _KERAS_INCEPTION_ORDER):
    return [ours[i] for i in _KERAS_INCEPTION_ORDER]
  if model_name == "resnet50" and kind in ("conv", "bn"):
    # Keras builds a stage's first block as shortcut, 1, 2, 3 but lists it as 1, 2, shortcut, 3.
    out, i = [ours[0]], 1
    while i < len(ours):
      block = ours[i:i + 4]
      if len(block) == 4 and block[3][-1] in ("conv_proj", "norm_proj"):
        out += [block[0], block[1], block[3], block[2]]
        i += 4
      else:
        out += ours[i:i + 3]
        i += 3
    return out
  return ours


def fmt_shape(value) -> str:
  """'3x3x64x128' for an array, a ShapeDtypeStruct or a shape tuple; 'scalar' for ()."""
  shape = tuple(getattr(value, "shape", value))
  return "x".join(str(d) for d in shape) if shape else "scalar"
