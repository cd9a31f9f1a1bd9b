"""Experiments over several seeds: each run reseeded and resumable, reported as mean ± std."""

import json
import os

import numpy as np

from cbir_jax.experiments.stages import finish


def with_seed(config, seed: int):
  """A copy of an experiment config whose every random choice is seeded by `seed`: the
  experiment's (subsets, validation carve) and each model's (initialisation, data order)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.seed = int(seed)
    for tag in c.models:
      c.models[tag].seed = int(seed)
  return c


def _numbers(tree, path=()):
  """Yields (path, value) for every number in a JSON-like tree (dicts only; lists skipped)."""
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _numbers(value, path + (key,))
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield path, float(tree)


def aggregate_seeds(payloads: dict[int, dict]) -> dict:
  """{"seeds", "mean", "std", "n"}: per number found at the same place in every payload's
  "table1" / "rows" / "fusion_variants" / "schemes" / "train" / "expansion" (population std
  over the seeds)."""
  out = {"seeds": sorted(payloads), "mean": {}, "std": {}, "n": len(payloads)}
  for section in ("table1", "rows", "fusion_variants", "schemes", "train", "expansion"):
    values: dict[tuple, list[float]] = {}
    for payload in payloads.values():
      for path, value in _numbers(payload.get(section) or {}):
        values.setdefault(path, []).append(value)
    for path, vals in values.items():
      if len(vals) != len(payloads):
        continue  # Not measured in every run: no mean.
      node_m, node_s = out["mean"].setdefault(section, {}), out["std"].setdefault(section, {})
      for key in path[:-1]:
        node_m, node_s = node_m.setdefault(key, {}), node_s.setdefault(key, {})
      node_m[path[-1]] = float(np.mean(vals))
      node_s[path[-1]] = float(np.std(vals))
  return out


def seeds_header(config, aggregate: dict) -> str:
  """The title of a seeds report; each experiment kind's `seeds_report` adds its tables."""
  seeds = ", ".join(str(s) for s in aggregate["seeds"])
  return f"## {config.name} ({config.scale} scale): mean ± std over seeds {seeds}\n\n"


def run_seeds(config, workdir: str, seeds) -> dict:
  """Runs the experiment once per seed (workdir/seed_<s>, each resumable; a pretraining stage
  once, in workdir/pretrain, shared by the seeds) and writes the aggregate (results.json: every
  run's payload and mean / std; results.md) to `workdir`."""
  seeds = [int(s) for s in seeds]
  if len(set(seeds)) != len(seeds) or not seeds:
    raise ValueError(f"seeds must be distinct ints, got {seeds}")
  # Pretraining stages run once, here, and every seed starts from them.
  from cbir_jax.experiments import pretrain  # pylint: disable=import-outside-toplevel
  config = pretrain.resolve(config, workdir)
  payloads = {}
  for seed in seeds:
    sub = os.path.join(workdir, f"seed_{seed}")
    os.makedirs(sub, exist_ok=True)
    from cbir_jax.experiments import run_experiment  # pylint: disable=import-outside-toplevel
    run_experiment(with_seed(config, seed), sub)
    with open(os.path.join(sub, "results.json"), encoding="utf-8") as f:
      payloads[seed] = json.load(f)
  aggregate = aggregate_seeds(payloads)
  # The kind's own tables (and, for recipes, the choice over seeds and a chart).
  from cbir_jax.experiments import seeds_report  # pylint: disable=import-outside-toplevel
  lines, extra = seeds_report(config, aggregate, workdir, payloads)
  markdown = seeds_header(config, aggregate) + "\n".join(lines) + "\n"
  if "choice" in extra:
    aggregate["choice"] = extra["choice"]
  files = extra.get("files", {})
  payload = {"experiment": config.name, "scale": config.scale, "seeds": seeds,
             "aggregate": aggregate, "runs": {str(s): p for s, p in payloads.items()}}
  return finish(workdir, payload, markdown, files)
