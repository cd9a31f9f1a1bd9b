"""Reports over several seeds: aggregation and each experiment kind's tables
(cbir_jax.experiments.seeds and the kinds' `seeds_report`)."""

from pathlib import Path

import ml_collections
import numpy as np
import pytest

from cbir_jax import config_util
import cbir_jax.experiments as experiments
from cbir_jax.experiments import seeds

REPO = Path(__file__).resolve().parents[2]


def _aggregate(payloads):
  return seeds.aggregate_seeds(dict(enumerate(payloads)))


def test_every_experiment_config_has_a_registered_kind():
  # A new kind must come with its runner and its seeds report.
  found = set()
  for path in sorted((REPO / "configs" / "experiments").glob("*.py")):
    if path.name == "__init__.py":
      continue
    module = config_util.load_sibling(str(path), path.name)
    kind = module.get_config("quick").kind
    assert kind in experiments.KINDS, (path.name, kind)
    found.add(kind)
  assert found == set(experiments.KINDS)


def test_unknown_kind_is_refused_by_name():
  config = ml_collections.ConfigDict({"kind": "nope", "name": "x", "scale": "cpu"})
  with pytest.raises(ValueError, match="'nope'"):
    experiments.seeds_report(config, {"seeds": [0], "mean": {}, "std": {}}, "/tmp", {})


def test_corel_report_is_mean_and_population_std_of_table1():
  def payload(al, f6):
    return {"table1": {"AL": {"metrics": {"paper_map@10": al, "map": al / 2}},
                       "F6": {"metrics": {"paper_map@10": f6, "map": f6 / 2}}}}
  agg = _aggregate([payload(0.6, 0.5), payload(0.8, 0.7), payload(0.7, 0.3)])
  config = ml_collections.ConfigDict({"kind": "corel_fusion", "name": "corel_heldout",
                                      "scale": "cpu", "ks": (10,)})
  lines, extra = experiments.seeds_report(config, agg, "/tmp", {})
  assert extra == {}
  assert lines[0] == "| feature | Top10 | mAP (full) |"
  al = [r for r in lines if r.startswith("| AL |")][0]
  std = np.std([0.6, 0.8, 0.7])
  assert al == f"| AL | 0.7000 ± {std:.4f} | 0.3500 ± {std / 2:.4f} |"
  assert "seeds 0, 1, 2" in seeds.seeds_header(config, agg)


def test_schemes_report_keeps_only_columns_every_family_has():
  rows = lambda s: {"rows": {"resnet50": {"backbone_acc": 0.5 + s, "scheme 1 map": 0.3 + s},
                             "mobilenet_v2": {"backbone_acc": 0.4 + s}}}
  agg = _aggregate([rows(0.0), rows(0.1)])
  config = ml_collections.ConfigDict({"kind": "schemes", "name": "cifar10_schemes",
                                      "scale": "cpu"})
  lines, _ = experiments.seeds_report(config, agg, "/tmp", {})
  assert lines[0] == "| family | backbone_acc |"
  assert "| resnet50 | 0.5500 ± 0.0500 |" in lines
  assert "| mobilenet_v2 | 0.4500 ± 0.0500 |" in lines


def test_corel_report_names_each_seeds_expansion_choice_from_its_payload():
  def payload(seed, plain, expanded, choice):
    row = lambda v: {"metrics": {"paper_map@10": v, "map": v}}
    return {"table1": {"AL": row(plain)},
            "expansion": {"choice": choice, "table": {"without": row(plain),
                                                      "with": row(expanded)}}}
  payloads = {0: payload(0, 0.6, 0.7, "dba2+qe3"), 1: payload(1, 0.8, 0.8, "none")}
  agg = seeds.aggregate_seeds(payloads)
  config = ml_collections.ConfigDict({"kind": "corel_fusion", "name": "corel_heldout",
                                      "scale": "cpu", "ks": (10,), "fusion": {"name": "AL"}})
  lines, _ = experiments.seeds_report(config, agg, "/nonexistent", payloads)
  assert any("(seed 0: dba2+qe3; seed 1: none)" in line for line in lines), lines
  assert "| AL + expansion | 0.7500 ± 0.0500 | 0.7500 ± 0.0500 |" in lines
  assert "| AL (plain) | 0.7000 ± 0.1000 | 0.7000 ± 0.1000 |" in lines
