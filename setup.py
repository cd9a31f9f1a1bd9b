"""Builds the optional native CPU kernels (cbir_jax.kernels._native, an XLA FFI custom call).

Everything else is configured in pyproject.toml. The extension is optional: without a C++17
compiler, or if it fails to build, the install still succeeds and the kernels use their pure-JAX
path (`cbir_jax.kernels.ffi.available()` tells which). It is compiled for the installing
machine's CPU (`-march=native`); set CBIR_JAX_NATIVE_ARCH (e.g. `x86-64-v3`) to build for
another, or CBIR_JAX_NATIVE_BUILD=0 to skip it.
"""

import os

from setuptools import Extension, setup


def _native_extensions():
  if os.environ.get("CBIR_JAX_NATIVE_BUILD", "1") == "0":
    return []
  try:
    import jaxlib  # build requirement (pyproject.toml): provides the XLA FFI headers
  except ImportError:
    return []
  arch = os.environ.get("CBIR_JAX_NATIVE_ARCH", "native")
  return [
      Extension(
          "cbir_jax.kernels._native",
          sources=["cbir_jax/kernels/csrc/ffi.cc"],
          depends=["cbir_jax/kernels/csrc/l2_topk.h", "cbir_jax/kernels/csrc/l2_gemv.h",
                   "cbir_jax/kernels/csrc/l2_half.h", "cbir_jax/kernels/csrc/hamming_topk.h"],
          include_dirs=[os.path.join(os.path.dirname(jaxlib.__file__), "include"),
                        "cbir_jax/kernels/csrc"],
          extra_compile_args=["-std=c++17", "-O3", f"-march={arch}", "-fvisibility=hidden"],
          language="c++",
          optional=True,
      )
  ]


setup(ext_modules=_native_extensions())
