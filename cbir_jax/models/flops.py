"""Arithmetic of a model's forward pass, counted from its layers' shapes."""

import flax.linen as nn
import jax
import numpy as np


def layer_flops(model: nn.Module, variables, x) -> int:
  """Multiply-adds x 2 of every nn.Conv and nn.Dense call in `model.apply(variables, x,
  train=False)`, from their kernel and output shapes (evaluated abstractly: nothing is computed;
  `variables` may be ShapeDtypeStructs)."""
  total = 0

  def count(next_fun, args, kwargs, context):
    nonlocal total
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
      kernel = module.variables["params"]["kernel"].shape
      # Dense: (in, out); Conv: (*window, in / groups, out). Each output element is a sum of
      # prod(kernel[:-1]) products.
      total += 2 * int(np.prod(out.shape)) * int(np.prod(kernel[:-1]))
    return out

  with nn.intercept_methods(count):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return total
