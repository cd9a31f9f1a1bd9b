"""Extract one endpoint's features of a data split with a trained model or imported weights.

  python bin/train.py --config=configs/digits.py --workdir=runs/digits
  python bin/extract.py --workdir=runs/digits --split=train --endpoint=f6 \
      --out=runs/digits/features/train_f6.npy                       # or `cbir-extract`
  # ImageNet weights you brought (torchvision .pth / .safetensors, Keras .h5; see README):
  python bin/extract.py --weights=alexnet.safetensors --model=alexnet --endpoint=fc8 \
      --dataset=image_folder --manual_dir=photos --image_size=227 --split=all \
      --out=runs/f/photos_fc8.npy

With --workdir the model, its variables and the data set settings (name, manual_dir, image
size, split seed) come from the run (`cbir_jax.train.trainer.restore`); --dataset and friends
override them. With --weights the file is imported (`cbir_jax.models.pretrained`) with the
preprocessing it expects, and the data set is given by the flags. Writes <out> (f32[n, d]),
<stem>.json (model, endpoint, checkpoint step or weights file and SHA-256, data set, split,
preprocessing, shape, dtype and the provenance record that makes an index of these vectors
searchable by image), <stem>.labels.npy and <stem>.ids.npy, each atomically
(`cbir_jax.jobs.extract_split`).
"""

import os

from absl import app, flags

from cbir_jax._bin import launch

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory (config.json and "
                               "checkpoints/ written by bin/train.py); or give --weights.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Imported weights instead of a run: a "
                               "torchvision state dict (.pth, .safetensors) or Keras weights "
                               "(.h5, .weights.h5) of --model.")
_WEIGHTS_FORMAT = flags.DEFINE_enum("weights_format", None, ["torch", "safetensors", "keras"],
                                    "Format of --weights when its extension does not say.")
_MODEL = flags.DEFINE_string("model", None, "With --weights: alexnet, resnet50, mobilenet_v2 "
                             "or inception_v3.")
_SPLIT = flags.DEFINE_string("split", None, "Data split to extract, e.g. train or test.")
_ENDPOINT = flags.DEFINE_string("endpoint", None, "Model endpoint, e.g. f6 (LeNet-L), fc8 "
                                "(AlexNet), pool or dfs (DFS-Nets).")
_OUT = flags.DEFINE_string("out", None, "Output features path ending in .npy.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to use; default the newest.")
_DATASET = flags.DEFINE_string("dataset", None, "Data set name; default the run's.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Raw data folder; default the run's.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir; default the run's.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Resize images to this side; default "
                                   "the run's dataset.image_size.")
_SEED = flags.DEFINE_integer("seed", None, "Seed of derived splits; default the run's seed.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per forward pass (a multiple of "
                                   "the number of local devices).")
flags.mark_flags_as_required(["split", "endpoint", "out"])


def _fail(message: str) -> None:
  launch.fail("extract", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if bool(_WORKDIR.value) == bool(_WEIGHTS.value):
    _fail("give --workdir (a training run) or --weights (an imported checkpoint), not both")
  if _WORKDIR.value:
    workdir = os.path.abspath(_WORKDIR.value)
    if not os.path.isfile(os.path.join(workdir, "config.json")):
      _fail(f"--workdir {workdir} has no config.json (not a bin/train.py run)")
  else:
    if not os.path.isfile(_WEIGHTS.value):
      _fail(f"--weights {_WEIGHTS.value!r} is not a file")
    if not _MODEL.value:
      _fail("--weights needs --model (alexnet, resnet50, mobilenet_v2 or inception_v3)")
    if not _DATASET.value:
      _fail("--weights needs the data set: --dataset (and --manual_dir, --image_size)")
  out = os.path.abspath(_OUT.value)
  if not out.endswith(".npy"):
    _fail(f"--out must end in .npy, got {_OUT.value!r}")
  try:
    os.makedirs(os.path.dirname(out), exist_ok=True)
  except OSError as e:
    _fail(f"cannot create the folder of --out {out}: {e.strerror}")
  if _BATCH_SIZE.value < 1:
    _fail(f"--batch_size must be >= 1, got {_BATCH_SIZE.value}")
  if _IMAGE_SIZE.value is not None and _IMAGE_SIZE.value < 1:
    _fail(f"--image_size must be >= 1 (omit it for the run's size), got {_IMAGE_SIZE.value}")

  # Imported after flag checks: keeps --help and flag errors fast.
  from cbir_jax import jobs  # pylint: disable=g-import-not-at-top
  from cbir_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from cbir_jax.features import extract as extract_lib  # pylint: disable=g-import-not-at-top
  from cbir_jax.train import trainer  # pylint: disable=g-import-not-at-top
  overrides = {"name": _DATASET.value, "manual_dir": _MANUAL_DIR.value,
               "data_dir": _DATA_DIR.value, "image_size": _IMAGE_SIZE.value}
  try:
    if _WORKDIR.value:
      config = trainer.load_config(workdir)
      jobs.check_endpoint(config.model.name, _ENDPOINT.value)
      ds = jobs.dataset_config(config, overrides)
    else:
      jobs.check_endpoint(_MODEL.value, _ENDPOINT.value)
      ds = jobs.dataset_from_flags(overrides)
    datasets.check_dataset_config(ds, [_SPLIT.value])
    run = (jobs.restore(workdir, _STEP.value) if _WORKDIR.value else
           jobs.import_weights(_WEIGHTS.value, _MODEL.value, format=_WEIGHTS_FORMAT.value))
    saved = jobs.extract_split(run, _SPLIT.value, _ENDPOINT.value, out,
                               batch_size=_BATCH_SIZE.value, dataset=ds, seed=_SEED.value)
  except (ValueError, FileNotFoundError, ImportError) as e:
    _fail(str(e))
  n, d = saved.features.shape
  origin = (f"checkpoint step {run.step}" if run.weights is None else
            f"{run.weights['file']}, {run.weights['framework']} variant {run.weights['variant']}")
  print(f"extracted {run.model_name} {_ENDPOINT.value} ({origin}) of {ds.name}/{_SPLIT.value}: "
        f"{n} x {d} float32")
  paths = extract_lib.sidecar_paths(out)
  for path in (out, paths["json"], paths["labels"], paths["ids"]):
    print(f"  {path}")


def run() -> None:
  launch.ensure_malloc_tuning()
  app.run(main)


if __name__ == "__main__":
  run()
