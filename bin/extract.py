"""Extract one endpoint's features of a data split with a trained model; writes .npy + sidecars.

  python bin/train.py --config=configs/digits.py --workdir=runs/digits
  python bin/extract.py --workdir=runs/digits --split=train --endpoint=f6 \
      --out=runs/digits/features/train_f6.npy                       # or `cbir-extract`
  python bin/extract.py --workdir=runs/digits --split=test --endpoint=f6 \
      --out=runs/digits/features/test_f6.npy

The model, its variables and the data set settings (name, manual_dir, image size, split seed)
come from the run in --workdir (`cbir_jax.train.trainer.restore`); --dataset and friends override
them. Writes <out> (f32[n, d]), <stem>.json (model, endpoint, checkpoint step, data set, split,
preprocessing, shape, dtype), <stem>.labels.npy and <stem>.ids.npy, each atomically.
"""

import os

from absl import app, flags

from cbir_jax._bin import launch

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory (config.json and "
                               "checkpoints/ written by bin/train.py).")
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
flags.mark_flags_as_required(["workdir", "split", "endpoint", "out"])


def _fail(message: str) -> None:
  launch.fail("extract", message)


def _latest_step(workdir: str) -> int | None:
  """Newest complete checkpoint step: orbax renames `<step>` into place only when complete."""
  directory = os.path.join(workdir, "checkpoints")
  steps = [int(d) for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(
      directory) else []
  return max(steps) if steps else None


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  workdir = os.path.abspath(_WORKDIR.value)
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    _fail(f"--workdir {workdir} has no config.json (not a bin/train.py run)")
  out = os.path.abspath(_OUT.value)
  if not out.endswith(".npy"):
    _fail(f"--out must end in .npy, got {_OUT.value!r}")
  if not os.path.isdir(os.path.dirname(out)):
    try:
      os.makedirs(os.path.dirname(out), exist_ok=True)
    except OSError as e:
      _fail(f"cannot create the folder of --out {out}: {e.strerror}")
  if _BATCH_SIZE.value < 1:
    _fail(f"--batch_size must be >= 1, got {_BATCH_SIZE.value}")
  step = _STEP.value if _STEP.value is not None else _latest_step(workdir)
  if step is None:
    _fail(f"--workdir {workdir} has no checkpoint in checkpoints/")

  # Imported after flag checks: keeps --help and flag errors fast.
  from cbir_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from cbir_jax.features import extract as extract_lib  # pylint: disable=g-import-not-at-top
  from cbir_jax.models import registry  # pylint: disable=g-import-not-at-top
  from cbir_jax.train import trainer  # pylint: disable=g-import-not-at-top

  config = trainer.load_config(workdir)
  model_name = config.model.name
  if _ENDPOINT.value not in registry.endpoints(model_name):
    _fail(f"--endpoint {_ENDPOINT.value!r} is not an endpoint of {model_name}; valid: "
          f"{', '.join(registry.endpoints(model_name))}")
  ds = config.dataset
  name = _DATASET.value or ds.name
  if name not in datasets.list_datasets():
    _fail(f"--dataset {name!r} is unknown; valid: {', '.join(datasets.list_datasets())}")
  if _SPLIT.value not in datasets.list_splits(name):
    _fail(f"--split {_SPLIT.value!r} is not a split of {name}; valid: "
          f"{', '.join(datasets.list_splits(name))}")
  image_size = _IMAGE_SIZE.value if _IMAGE_SIZE.value is not None else ds.get("image_size")
  image_size = None if image_size in (None, 0, -1, "") else image_size
  seed = _SEED.value if _SEED.value is not None else int(config.seed)
  manual_dir = _MANUAL_DIR.value if _MANUAL_DIR.value is not None else ds.get("manual_dir")
  data_dir = _DATA_DIR.value if _DATA_DIR.value is not None else ds.get("data_dir")

  try:
    model, variables, _ = trainer.restore(workdir, _STEP.value)
    arrays = datasets.load_arrays(name, _SPLIT.value, manual_dir=manual_dir or None,
                                  data_dir=data_dir or None, image_size=image_size, seed=seed)
    metadata = {"model": model_name, "workdir": workdir, "checkpoint_step": int(step),
                "dataset": name, "split": _SPLIT.value, "image_size": image_size,
                "split_seed": seed, "class_names": list(arrays.class_names)}
    features = extract_lib.extract(
        model, variables, arrays.images, _ENDPOINT.value, batch_size=_BATCH_SIZE.value, out=out,
        metadata=metadata, labels=arrays.labels, ids=arrays.ids)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  paths = extract_lib.sidecar_paths(out)
  print(f"extracted {model_name} {_ENDPOINT.value} (checkpoint step {step}) of {name}/"
        f"{_SPLIT.value}: {features.shape[0]} x {features.shape[1]} float32")
  for path in (out, paths["json"], paths["labels"], paths["ids"]):
    print(f"  {path}")


def run() -> None:
  launch.ensure_malloc_tuning()
  app.run(main)


if __name__ == "__main__":
  run()
