"""Shared fixtures for the model tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _host_init(shapes, seed: int):
  """Fills an init-shaped tree on the host: fan-in-scaled normal kernels, zero biases/means,
  unit BN scales/variances. Avoids compiling `model.init`, whose per-parameter RNG code takes
  ~0.5 s of XLA CPU compile per parameter (about a minute for InceptionV3)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if leaf.ndim >= 2:
      return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])),
                         leaf.dtype)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="session")
def host_init():
  """`host_init(shapes, seed)`: variables for an init-shaped tree without compiling init."""
  return _host_init


@pytest.fixture
def cpu_backend(monkeypatch):
  """Runs the test on the CPU device with `jax.default_backend()` reporting "cpu".

  The drop-ins of models/conv.py take their CPU formulations only when the default backend is
  the CPU; on a GPU or TPU host they are lax's own ops, and tests of the CPU formulations (their
  values, gradients and program structure) would test lax instead. A no-op on a CPU host.
  """
  if jax.default_backend() == "cpu":
    yield
    return
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  with jax.default_device(jax.devices("cpu")[0]):
    yield
