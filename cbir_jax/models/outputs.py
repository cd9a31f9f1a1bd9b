"""Feature-endpoint plumbing shared by all models: validate requests, package outputs."""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

Outputs = jax.Array | tuple[jax.Array, dict[str, jax.Array]]


def check_endpoints(features: Sequence[str] | str | None, available: Sequence[str],
                    model: str) -> tuple[str, ...] | None:
  """Validates a `features=` request against a model's endpoints.

  Args:
    features: None (logits only), one endpoint name, or a sequence of names.
    available: the model's endpoint names.
    model: model name used in the error message.

  Returns:
    None when `features` is None, else the requested names as a tuple (duplicates kept once).

  Raises:
    ValueError: an unknown endpoint name; the message lists the valid ones.
    TypeError: `features` is not None, a str, or a sequence of str.
  """
  if features is None:
    return None
  if isinstance(features, str):
    features = (features,)
  if not isinstance(features, Sequence) or not all(isinstance(f, str) for f in features):
    raise TypeError(f"features must be None, a str or a sequence of str, got {features!r}")
  unknown = [f for f in features if f not in available]
  if unknown:
    raise ValueError(
        f"unknown endpoint(s) {unknown} for model {model}; valid endpoints: {list(available)}")
  return tuple(dict.fromkeys(features))


def package(logits: jax.Array, values: Mapping[str, jax.Array],
            requested: tuple[str, ...] | None) -> Outputs:
  """Returns float32 `logits`, or `(logits, {name: float32 value})` when features were requested.

  Values are cast to float32 so reduced-precision models keep the f32 output contract.
  """
  logits = jnp.asarray(logits, jnp.float32)
  if requested is None:
    return logits
  return logits, {name: jnp.asarray(values[name], jnp.float32) for name in requested}
