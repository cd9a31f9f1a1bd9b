"""Reproduce a paper experiment end to end: train -> extract -> fuse/hash -> index -> evaluate.

  python bin/reproduce.py --experiment=corel_paper:cpu --workdir=runs/corel_paper_cpu
  python bin/reproduce.py --experiment=corel_heldout --quick --workdir=/tmp/corel_quick
  python bin/reproduce.py --experiment=cifar10_schemes:cpu,families=inception_v3 \
      --workdir=runs/c10_cpu

Experiments are the files configs/experiments/<name>.py (`get_config(arg)`; the docstring of
each holds its commands): corel_paper, corel_heldout, cifar10_schemes, caltech256_schemes.
Every stage is skipped when its outputs exist in the workdir (training resumes from its newest
orbax checkpoint), so an interrupted run continues where it stopped. --seeds=0,1,2 runs the whole
experiment once per seed (models, data order, subsets and validation carve all reseeded; each in
<workdir>/seed_<s>) and reports every number as mean ± std over the seeds. Writes to the workdir:
train/<tag>/ (checkpoints, metrics), features/*.npy, results.json, results.md and PNG figures.
"""

import importlib.util
import os
import time

from absl import app, flags, logging

from cbir_jax._bin import launch

_EXPERIMENT = flags.DEFINE_string(
    "experiment", None, "Experiment name, optionally with its config argument: corel_paper, "
    "corel_heldout, cifar10_schemes, caltech256_schemes; e.g. corel_paper:cpu.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; an existing one is resumed.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke-test scale: tiny images, a few steps.")
_SEEDS = flags.DEFINE_list("seeds", [], "Seeds to run (each in <workdir>/seed_<s>, resumable), "
                           "reported as mean ± std; empty: the config's seed, in <workdir>.")
flags.mark_flags_as_required(["experiment", "workdir"])

_HERE = os.path.dirname(os.path.abspath(__file__))
EXPERIMENTS = ("corel_paper", "corel_heldout", "cifar10_schemes", "caltech256_schemes",
               "corel_recipe", "cifar10_recipe")


def _fail(message: str) -> None:
  launch.fail("reproduce", message)


def _experiment_file(name: str) -> str:
  """configs/experiments/<name>.py beside bin/ (a checkout) or cbir_jax/_configs (installed)."""
  for folder in ("configs", "_configs"):
    path = os.path.join(_HERE, os.pardir, folder, "experiments", f"{name}.py")
    if os.path.exists(path):
      return os.path.abspath(path)
  raise FileNotFoundError(f"no configs/experiments/{name}.py beside {_HERE}")


def load_experiment(spec: str, quick: bool):
  """'name[:arg]' (+ quick) -> the experiment's ConfigDict."""
  name, _, arg = spec.partition(":")
  if name not in EXPERIMENTS:
    raise ValueError(f"--experiment must be one of {list(EXPERIMENTS)}, got {name!r}")
  if quick:
    arg = ",".join([p for p in arg.split(",") if p and p not in ("cpu", "quick")] + ["quick"])
  module_spec = importlib.util.spec_from_file_location(f"_experiment_{name}",
                                                       _experiment_file(name))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  try:
    seeds = [int(x) for x in _SEEDS.value]
  except ValueError:
    _fail(f"--seeds must be comma-separated ints, got {','.join(_SEEDS.value)!r}")
  if len(set(seeds)) != len(seeds):
    _fail(f"--seeds must be distinct, got {','.join(_SEEDS.value)}")
  try:
    config = load_experiment(_EXPERIMENT.value, _QUICK.value)
  except (ValueError, FileNotFoundError) as e:
    _fail(f"bad --experiment={_EXPERIMENT.value}: {e}")
  if not config.dataset.manual_dir:
    _fail(f"experiment {config.name} needs its data set {config.dataset.name!r}, which was not "
          f"found (the shared datasets folder has no {config.dataset.name}); pass "
          f"--experiment={config.name}:data=<folder>" + (
              " (the full 256_ObjectCategories set)" if config.dataset.name == "caltech256"
              else ""))
  if not os.path.isdir(config.dataset.manual_dir):
    _fail(f"data folder {config.dataset.manual_dir} does not exist")
  workdir = launch.output_dir("reproduce", "workdir", _WORKDIR.value)

  from cbir_jax import experiments  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  summary = (experiments.run_seeds(config, workdir, seeds) if seeds
             else experiments.run_experiment(config, workdir))
  print(summary["markdown"])
  print(f"{config.name} ({config.scale} scale) finished in {time.perf_counter() - start:.1f} s; "
        f"outputs in {workdir}:")
  for name in summary["files"]:
    print(f"  {os.path.join(workdir, name)}")


def run() -> None:
  launch.ensure_malloc_tuning()
  logging.set_verbosity(logging.INFO)
  app.run(main, flags_parser=launch.flags_parser("reproduce"))


if __name__ == "__main__":
  run()
