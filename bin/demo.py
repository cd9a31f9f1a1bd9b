"""The main job: train LeNet-L, index its F6 features exactly and as hashes, score held-out queries.

  python bin/demo.py --workdir=runs/demo            # or the console script `cbir-demo`
  python bin/demo.py --workdir=runs/demo --config=configs/demo.py:quick

Prints a table of paper mAP@10..50 (seed 000's formula 3) and standard mAP for the exact
Euclidean index and the mean-threshold hash + Hamming index, then where its outputs are.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from cbir_jax._bin import launch

# configs/ sits beside bin/ in a checkout; an installed copy is packaged as cbir_jax/_configs.
_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = next(
    (p for p in (os.path.join(_HERE, os.pardir, d, "demo.py") for d in ("configs", "_configs"))
     if os.path.exists(p)), "configs/demo.py")

try:  # With a default file, config_flags applies --config.<field> overrides right here.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", _DEFAULT_CONFIG, "ml_collections config file (default configs/demo.py); "
      "append ':quick' for a seconds-long run; override fields with --config.field=value.",
      lock_config=True)
except (KeyError, AttributeError, ValueError, TypeError) as e:
  launch.fail("demo", f"bad --config: {launch.one_line(e)}")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo",
                               "Directory for checkpoints, features, indexes, PNGs and results.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Data set name (overrides config.dataset.name): digits (embedded default), "
    "corel1k, cifar10_local, caltech256, image_folder; the non-embedded ones need "
    "--config.dataset.manual_dir.")


_WEIGHTS = flags.DEFINE_string(
    "weights", None, "Index an imported network instead of training: a torchvision state dict "
    "(.pth, .safetensors) or Keras weights (.h5) of --weights_model; --config.retrieval."
    "endpoint names its layer (e.g. fc8 for AlexNet, pool for the backbones).")
_WEIGHTS_MODEL = flags.DEFINE_string("weights_model", None, "The model of --weights: alexnet, "
                                     "resnet50, mobilenet_v2 or inception_v3.")
_WEIGHTS_FORMAT = flags.DEFINE_enum("weights_format", None, ["torch", "safetensors", "keras"],
                                    "Format of --weights when its extension does not say.")


def _fail(message: str) -> None:
  launch.fail("demo", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if not flags.FLAGS["verbosity"].present:  # library INFO logs (orbax, ...) only on request
    logging.set_verbosity(logging.WARNING)
  from cbir_jax import demo  # after flag parsing: keeps --help fast
  from cbir_jax.data import datasets
  try:
    config = _CONFIG.value  # config_flags applies --config.<field> overrides only here
  except (KeyError, AttributeError, ValueError, TypeError, OSError) as e:
    _fail(f"bad --config: {launch.one_line(e)}")
  if _DATASET.value is not None:
    with config.unlocked():
      config.dataset.name = _DATASET.value
  try:  # Every field, before any training (a bad image_size must not fail after the run).
    datasets.check_dataset_config(config.dataset)  # An unknown name first, then:
    if config.dataset.name != "digits" and not config.dataset.manual_dir:
      raise ValueError(f"dataset {config.dataset.name!r} needs "
                       "--config.dataset.manual_dir=<folder>")
    if _WEIGHTS.value:
      if not os.path.isfile(_WEIGHTS.value):
        raise ValueError(f"--weights {_WEIGHTS.value!r} is not a file")
      if not _WEIGHTS_MODEL.value:
        raise ValueError("--weights needs --weights_model (alexnet, resnet50, mobilenet_v2 or "
                         "inception_v3)")
      with config.unlocked():  # The checks below concern the imported model, not LeNet-L.
        config.model.name = _WEIGHTS_MODEL.value
        config.model.kwargs = {}
    demo.check_config(config)
  except (ValueError, TypeError) as e:
    _fail(str(e))
  workdir = launch.output_dir("demo", "workdir", _WORKDIR.value)
  try:
    result = demo.run_demo(config, workdir, weights=_WEIGHTS.value,
                           weights_model=_WEIGHTS_MODEL.value,
                           weights_format=_WEIGHTS_FORMAT.value)
  except ImportError as e:  # A .pth file without torch: the message names the extra.
    _fail(str(e))

  ks = result.ks
  header = ["index"] + [f"mAP@{k}" for k in ks] + ["mAP (full)", "search s"]
  rows = [[r.name] + [f"{r.metrics[f'paper_map@{k}']:.4f}" for k in ks]
          + [f"{r.metrics['map']:.4f}", f"{r.search_seconds:.3f}"] for r in result.reports]
  widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
  print()
  print(f"{config.dataset.name}: held-out queries; mAP@k = seed 000's formula (3) "
        "(class-averaged precision@k); mAP (full) = standard AP over the whole ranking")
  for row in [header] + rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
  if "eval_accuracy" in result.train_metrics:
    print(f"classification accuracy on the queries: {result.train_metrics['eval_accuracy']:.4f}")
  print("time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
  print(f"outputs in {workdir}:")
  width = max(len(name) for name in result.files)
  for name, path in sorted(result.files.items()):
    print(f"  {name.ljust(width)}  {path}")


def run() -> None:
  launch.ensure_malloc_tuning()
  app.run(main, flags_parser=launch.flags_parser("demo"))


if __name__ == "__main__":
  run()
