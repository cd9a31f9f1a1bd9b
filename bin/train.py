"""Train a registered model on a data set from an ml_collections config; resumes automatically.

  python bin/train.py --config=configs/digits.py --workdir=runs/digits   # or `cbir-train`
  python bin/train.py --config=configs/cifar10.py:model=dfs_resnet50,cpu --workdir=runs/c10 \
      --config.batch_size=32
  python bin/train.py --config=configs/lenet_l_corel1k.py:cpu --workdir=runs/k800 \
      --config.model.kwargs.k=800

Writes <workdir>/config.json, checkpoints/ (orbax; restarting with the same workdir resumes
exactly) and metrics.jsonl, and prints the final metrics and where the outputs are.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from cbir_jax._bin import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "ml_collections config file, e.g. configs/digits.py or "
    "configs/cifar10.py:model=resnet50,cpu; override fields with --config.field=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (checkpoints, metrics, "
                               "config.json); an existing run there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
  launch.fail("train", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  # Imported after flag parsing: keeps --help and flag errors fast.
  from cbir_jax.train import trainer  # pylint: disable=g-import-not-at-top
  try:
    config = _CONFIG.value
    config.get("model")  # config_flags reports a config file it could not load only here.
  except OSError as e:
    _fail(f"bad --config: {launch.one_line(e)}")
  try:
    trainer.validate_config(config)
  except (ValueError, TypeError) as e:
    _fail(f"bad --config: {e}")
  if config.dataset.name != "digits" and not config.dataset.get("manual_dir", ""):
    _fail(f"dataset {config.dataset.name!r} needs --config.dataset.manual_dir=<folder>")
  workdir = launch.output_dir("train", "workdir", _WORKDIR.value)

  try:
    result = trainer.train_and_evaluate(config, workdir)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  m = result.metrics
  print(f"trained {config.model.name} on {config.dataset.name} for {int(m['steps'])} steps in "
        f"{m['train_seconds']:.1f} s" + (f" ({m['images_per_sec']:.0f} images/s)"
                                         if "images_per_sec" in m else ""))
  for key in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy"):
    if key in m:
      print(f"  {key:15s} {m[key]:.4f}")
  print(f"outputs in {workdir}:")
  for name in ("config.json", "checkpoints", "metrics.jsonl"):
    print(f"  {os.path.join(workdir, name)}")


def run() -> None:
  launch.ensure_malloc_tuning()
  app.run(main, flags_parser=launch.flags_parser("train"))


if __name__ == "__main__":
  run()
