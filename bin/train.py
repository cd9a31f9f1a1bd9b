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
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "ml_collections config file, e.g. configs/digits.py or "
    "configs/cifar10.py:model=resnet50,cpu; override fields with --config.field=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (checkpoints, metrics, "
                               "config.json); an existing run there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
  print(f"train: {message}", file=sys.stderr)
  sys.exit(2)


def _one_line(error: BaseException) -> str:
  """An exception's message on one line: its first and last lines (config_flags embeds whole
  tracebacks in its messages; the first names the flag, the last the cause)."""
  message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if len(lines) > 2:
    lines = [lines[0], lines[-1]]
  return " ".join(lines).replace("Error whilst parsing config file: Traceback "
                                 "(most recent call last):", "cannot build the config:")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a bad flag, a broken config file or a typo'd --config.<field>
  (ml_collections raises inside the parser) ends in one 'train: ...' line, exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"{_one_line(e)} (see --help)")
  except Exception as e:  # pylint: disable=broad-except
    _fail(f"bad --config: {_one_line(e)}")
  return []


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  # Imported after flag parsing: keeps --help and flag errors fast.
  from cbir_jax.train import trainer  # pylint: disable=g-import-not-at-top
  try:
    config = _CONFIG.value
    config.get("model")  # config_flags reports a config file it could not load only here.
  except OSError as e:
    _fail(f"bad --config: {_one_line(e)}")
  try:
    trainer.validate_config(config)
  except (ValueError, TypeError) as e:
    _fail(f"bad --config: {e}")
  if config.dataset.name != "digits" and not config.dataset.get("manual_dir", ""):
    _fail(f"dataset {config.dataset.name!r} needs --config.dataset.manual_dir=<folder>")
  workdir = os.path.abspath(_WORKDIR.value)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    _fail(f"cannot create --workdir {workdir}: {e.strerror}")
  if not os.access(workdir, os.W_OK | os.X_OK):
    _fail(f"--workdir {workdir} is not writable")

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
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
