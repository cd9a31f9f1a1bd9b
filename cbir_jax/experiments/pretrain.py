"""Pretraining stages: networks an experiment trains first, on another data set, to start from.

An experiment config may hold `pretrain`: training configs keyed by model tag (e.g.
configs/experiments/corel_paper.py's "pretrain=cifar10": each Corel network first trains on
CIFAR-10 at its own input size), and the model `tag` then has `init_from = "pretrain:<tag>"`.
`resolve` trains each one once in <workdir>/pretrain/<tag> (resuming, cached like every stage)
and returns the config with those references replaced by the runs' workdirs, so the trainer's
`init_from=<workdir>` loads their selected checkpoint. `run_seeds` resolves before it reseeds:
the seeds share one pretraining run and vary the fine-tuning (initialisation of the new head,
data order, validation carve).
"""

import os

import ml_collections

from cbir_jax.experiments.stages import train_cached

PREFIX = "pretrain:"


def resolve(config, workdir: str) -> ml_collections.ConfigDict:
  """`config` with every "pretrain:<tag>" init_from replaced by its trained run's workdir and
  `pretrain_results` (tag -> that run's train result) added; `config` itself if it has no
  pretraining stage. Raises ValueError for a reference to a tag `pretrain` does not hold."""
  pretrain = config.get("pretrain", None)
  references = {tag: m.get("init_from", "") for tag, m in config.models.items()
                if str(m.get("init_from", "")).startswith(PREFIX)}
  if not pretrain and not references:
    return config
  c = config.copy_and_resolve_references()
  results = {}
  with c.unlocked():
    for tag, reference in references.items():
      source = reference[len(PREFIX):]
      if not pretrain or source not in pretrain:
        raise ValueError(f"model {tag!r} starts from {reference!r}, but the experiment's "
                         f"pretrain stages are {sorted(pretrain or {})}")
      path = os.path.abspath(os.path.join(workdir, "pretrain", source))
      if source not in results:
        results[source], _ = train_cached(pretrain[source], path, f"pretrain {source}")
      c.models[tag].init_from = path
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain_results = ml_collections.ConfigDict(results)
  return c
