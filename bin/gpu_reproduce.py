"""bin/reproduce.py on a machine where cbir_jax is not installed and tensorflow is absent.

  python bin/gpu_reproduce.py --experiment=cifar10_schemes:gpu,data=<packed folder> \
      --workdir=/tmp/c10_gpu

Used by bin/gpu_reproduce.sh on the lent GPU machine (docs/RESULTS.md, "Paper scale on one GPU"),
which has jax, flax, optax, orbax but no tensorflow or tensorflow-datasets and gets the repository
as a plain folder. Two things make bin/reproduce.py run there, and nothing else changes:
  1. `cbir_jax._bin` (the launchers' package name once installed, pyproject.toml's package-dir)
     is mapped onto this folder, so `from cbir_jax._bin import launch` works from a checkout.
  2. Only when `import tensorflow` fails: clu's `metric_writers` package, whose __init__ imports
     its TensorFlow summary writer, is loaded without that one module, and its
     `create_default_writer` gives the logging writer alone (absl logs). Training metrics still go
     to each run's metrics.jsonl (train.metric_log); only the TensorBoard event files are not
     written. Where tensorflow imports, clu is left exactly as it is.
Every flag is bin/reproduce.py's.
"""

import importlib
import importlib.util
import os
import sys
import types

_HERE = os.path.dirname(os.path.abspath(__file__))


def _map_bin_package() -> None:
  """Registers bin/ as the package `cbir_jax._bin` (what an install's package-dir does; an
  editable install maps the same folder)."""
  import cbir_jax  # pylint: disable=g-import-not-at-top
  if "cbir_jax._bin" in sys.modules:
    return
  spec = importlib.util.spec_from_file_location("cbir_jax._bin", os.path.join(_HERE, "__init__.py"),
                                                submodule_search_locations=[_HERE])
  module = importlib.util.module_from_spec(spec)
  sys.modules["cbir_jax._bin"] = module
  spec.loader.exec_module(module)
  cbir_jax._bin = module  # pylint: disable=protected-access


def tensorflow_available() -> bool:
  """True when `import tensorflow` works here."""
  try:
    importlib.import_module("tensorflow")
  except ImportError:
    return False
  return True


def logging_only_metric_writers() -> types.ModuleType:
  """clu.metric_writers without its TensorFlow summary writer (see the module docstring).

  The package module is created by hand (its __init__ is not run) with the real folder as its
  path, so clu's own interface, logging, multi and async writers are imported unchanged.
  """
  spec = importlib.util.find_spec("clu")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("clu is not installed; carry its wheel (bin/gpu_prepare.sh)")
  folder = os.path.join(list(spec.submodule_search_locations)[0], "metric_writers")
  package = types.ModuleType("clu.metric_writers", "clu.metric_writers, logging writer only "
                             "(no tensorflow here; bin/gpu_reproduce.py)")
  package.__path__ = [folder]
  sys.modules["clu.metric_writers"] = package
  interface = importlib.import_module("clu.metric_writers.interface")
  logging_writer = importlib.import_module("clu.metric_writers.logging_writer")
  multi_writer = importlib.import_module("clu.metric_writers.multi_writer")
  async_writer = importlib.import_module("clu.metric_writers.async_writer")

  def create_default_writer(logdir=None, *, just_logging=False, asynchronous=True,
                            collection=None):
    """clu's default writer minus the TensorFlow summary writer: logging only."""
    del logdir, just_logging  # Nothing writes TensorBoard files without tensorflow.
    writer = logging_writer.LoggingWriter(collection=collection)
    return async_writer.AsyncMultiWriter([writer]) if asynchronous else multi_writer.MultiWriter(
        [writer])

  package.MetricWriter = interface.MetricWriter
  package.LoggingWriter = logging_writer.LoggingWriter
  package.MultiWriter = multi_writer.MultiWriter
  package.AsyncWriter = async_writer.AsyncWriter
  package.AsyncMultiWriter = async_writer.AsyncMultiWriter
  package.ensure_flushes = async_writer.ensure_flushes
  package.create_default_writer = create_default_writer
  import clu  # pylint: disable=g-import-not-at-top
  clu.metric_writers = package
  return package


def main() -> None:
  sys.path.insert(0, os.path.dirname(_HERE))  # the checkout's cbir_jax
  _map_bin_package()
  if not tensorflow_available():
    logging_only_metric_writers()
  reproduce = importlib.import_module("cbir_jax._bin.reproduce")
  reproduce.run()


if __name__ == "__main__":
  main()
