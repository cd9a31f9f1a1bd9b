"""The held-out variant table: several seeded `corel_heldout` runs side by side, chosen on
validation (issue 17 item 4).

Each run folder is a `bin/reproduce.py --experiment=corel_heldout:<variant> --seeds=...`
workdir (its results.json holds every seed), or that results.json itself. For each variant and
seed: the validation mAP of the fusion variant it chose (the number the winner is picked by),
the held-out query scores of AL, AL re-ranked with its expansion stage (where the run has one),
F6 and Fc8 (reported, never used), and the networks' validation and query accuracies.
"""

from __future__ import annotations

import json
import os

import numpy as np

from cbir_jax import atomic
from cbir_jax.eval import plots

FEATURES = ("AL", "F6", "Fc8")
NETWORKS = {"lenet": "lenet_lk1400", "alexnet": "alexnet"}


def _runs(workdir: str) -> dict[str, dict]:
  """The per-seed payloads of a run folder's results.json, or of a results JSON file itself
  (e.g. the copies committed under docs/results/)."""
  path = workdir if os.path.isfile(workdir) else os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run bin/reproduce.py --experiment="
                            "corel_heldout:... --workdir there first")
  with open(path, encoding="utf-8") as f:
    results = json.load(f)
  if results.get("experiment") != "corel_heldout" and "runs" not in results:
    raise ValueError(f"{path} is not a corel_heldout result")
  return results["runs"] if "runs" in results else {"0": results}


def _validation_map(run: dict) -> float:
  choice = run["fusion_choice"]
  score = choice["validation_scores"][choice["variant"]]
  return float(score["map"] if isinstance(score, dict) else score)


def variant_rows(workdirs: dict[str, str], k: int = 10) -> dict[str, dict]:
  """label -> {"seeds", "val_map": [...], "<feature> top<k>": [...], "<net> val acc": [...],
  "<net> query acc": [...]} (one value per seed)."""
  rows = {}
  for label, workdir in workdirs.items():
    runs = _runs(workdir)
    row = {"seeds": sorted(runs), "val_map": [_validation_map(r) for r in runs.values()]}
    for feature in FEATURES:
      row[f"{feature} top{k}"] = [r["table1"][feature]["metrics"][f"paper_map@{k}"]
                                  for r in runs.values()]
    # AL re-ranked with the DBA / alpha-QE pair chosen on validation (runs since 2026-11-29).
    row[f"AL+exp top{k}"] = [
        r["expansion"]["table"]["with"]["metrics"][f"paper_map@{k}"] if r.get("expansion")
        else np.nan for r in runs.values()]
    for net, tag in NETWORKS.items():
      # Runs trained before selection on validation evaluated the queries: their
      # eval_accuracy is the query accuracy and there is no validation accuracy.
      trained = [r["train"][tag] for r in runs.values()]
      row[f"{net} val acc"] = [t.get("val_accuracy", np.nan) for t in trained]
      row[f"{net} query acc"] = [t.get("test_accuracy", t.get("eval_accuracy", np.nan))
                                 for t in trained]
    rows[label] = row
  return rows


def write_variant_table(workdirs: dict[str, str], out: str, *, k: int = 10,
                        title: str = "held-out Corel-1K variants") -> dict:
  """Writes <out>/variants.json, variants.md and variants.png; returns {"markdown", "winner"}.
  The winner is the variant with the best mean validation mAP."""
  rows = variant_rows(workdirs, k)
  os.makedirs(out, exist_ok=True)
  winner = max(rows, key=lambda label: float(np.mean(rows[label]["val_map"])))
  fmt = lambda v: "-" if np.all(np.isnan(v)) else f"{np.mean(v):.4f} ± {np.std(v):.4f}"
  cols = (["val_map", f"AL top{k}", f"AL+exp top{k}"] + [f"{f} top{k}" for f in FEATURES[1:]]
          + [f"{n} {kind} acc" for n in NETWORKS for kind in ("val", "query")])
  heads = (["validation mAP (decides)", f"AL mAP(Top{k}), queries",
            f"AL + DBA/alpha-QE mAP(Top{k}), queries"]
           + [f"{f} mAP(Top{k}), queries" for f in FEATURES[1:]]
           + [f"{n} {kind} acc" for n in NETWORKS for kind in ("val", "query")])
  md = ["| variant | seeds | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
  for label, row in rows.items():
    name = f"**{label}**" if label == winner else label
    md.append(f"| {name} | {len(row['seeds'])} | "
              + " | ".join(fmt(np.asarray(row[c], float)) for c in cols) + " |")
  markdown = "\n".join(md) + f"\n\nWinner on validation: {winner}.\n"
  groups = list(rows)
  series = {"validation mAP": ([np.mean(rows[g]["val_map"]) for g in groups],
                               [np.std(rows[g]["val_map"]) for g in groups])}
  for feature in FEATURES:
    key = f"{feature} top{k}"
    series[f"{feature} mAP(Top{k})"] = ([np.mean(rows[g][key]) for g in groups],
                                         [np.std(rows[g][key]) for g in groups])
  plots.bars(os.path.join(out, "variants.png"), groups, series, ylabel="mAP",
             title=f"{title} (mean ± std over seeds)")
  atomic.write_json(os.path.join(out, "variants.json"),
                    {"workdirs": workdirs, "k": k, "winner": winner, "rows": rows})
  atomic.write_text(os.path.join(out, "variants.md"), markdown)
  return {"markdown": markdown, "winner": winner}
