"""Training recipes compared on validation: several training configs of one network, each
trained on the same data with a validation split carved from its training side; the recipe with
the best validation accuracy wins (mean over seeds when several run). Query/test accuracy is
measured once per run, at its selected checkpoint, and only reported (issue 21)."""

import os

import numpy as np

from cbir_jax.eval import plots
from cbir_jax.experiments.stages import Stages, finish, mean_std, training_table

COLUMNS = ("val_accuracy", "test_accuracy")


def _label(config) -> str:
  """The experiment's name and its variant (e.g. "corel_recipe:net=lenet_l")."""
  return config.name + (f":{config.variant}" if config.get("variant", "") else "")


def _incumbent_note(config) -> str:
  incumbent = config.get("incumbent", "")
  return f" (a tie keeps the configs' recipe, {incumbent})" if incumbent else ""


def check(config) -> None:
  """Every recipe must decide on the validation split; refuses before anything trains."""
  for tag, m in config.models.items():
    if m.dataset.get("eval_split", "") != "validation" or not m.dataset.get(
        "validation_fraction", 0.0) > 0:
      raise ValueError(f"recipe {tag!r} must evaluate on a validation split carved from its "
                       f"training data (dataset.eval_split='validation', validation_fraction > "
                       f"0), got eval_split={m.dataset.get('eval_split', '')!r}")


def choose(rows: dict, incumbent: str = "") -> dict:
  """{"recipe", "chosen_by", "validation_accuracy"}: the best validation accuracy; on a tie the
  `incumbent` (the recipe the configs use now: no change without evidence), else the first in
  config order. Test accuracy is never looked at."""
  scores = {tag: float(r["val_accuracy"]) for tag, r in rows.items()}
  best = max(scores, key=lambda t: (scores[t], t == incumbent, -list(scores).index(t)))
  return {"recipe": best, "chosen_by": "validation accuracy", "validation_accuracy": scores,
          "incumbent": incumbent}


def _chart(workdir: str, rows: dict, std: dict | None, title: str) -> str:
  """recipes.png: each recipe's validation accuracy (decides) beside its test accuracy
  (reported), with error bars when `std` (same keys as `rows`) is given."""
  def series(column, fill):
    return ([r.get(column, fill) for r in rows.values()],
            [(std or {}).get(t, {}).get(column, 0.0) for t in rows])
  return plots.bars(os.path.join(workdir, "recipes.png"), list(rows),
                    {"validation acc (decides)": series("val_accuracy", np.nan),
                     "test acc (reported)": series("test_accuracy", np.nan)},
                    ylabel="accuracy", title=title)


def run_recipes(config, workdir: str) -> dict:
  """Trains every recipe of `config.models` (cached, resumable) and reports their validation
  and test accuracies, the recipe chosen on validation and a bar chart."""
  check(config)
  st = Stages(config, workdir)
  train = {tag: st.train(tag) for tag in config.models}
  rows = {tag: {c: float(t[c]) for c in COLUMNS if c in t} for tag, t in train.items()}
  for tag, row in rows.items():
    if "val_accuracy" not in row:
      raise ValueError(f"recipe {tag!r} has no validation accuracy (trained without a "
                       f"validation split; delete {os.path.join(workdir, 'train', tag)})")
  choice = choose(rows, config.get("incumbent", ""))
  files = {"recipes.png": _chart(workdir, rows, None,
                                 f"{_label(config)}: recipes (seed {config.seed})")}
  md = [f"## {_label(config)} ({config.scale} scale, seed {config.seed})\n", config.description,
        "", f"Chosen on validation: **{choice['recipe']}**{_incumbent_note(config)}.\n",
        training_table(train, "test acc (reported)")]
  payload = {"experiment": config.name, "scale": config.scale, "seed": config.seed,
             "rows": rows, "choice": choice, "train": train,
             "config": config.to_dict(), "seconds": st.seconds}
  return finish(workdir, payload, "\n".join(md) + "\n", files)


def seeds_report(config, aggregate: dict, workdir: str,
                 payloads: dict[int, dict]) -> tuple[list[str], dict]:
  """(markdown lines, files) over seeds: each recipe's mean ± std accuracies, the recipe chosen
  by mean validation accuracy and the bar chart with error bars. `payloads` is unused."""
  del payloads
  mean, std = aggregate["mean"]["rows"], aggregate["std"]["rows"]
  choice = choose({tag: {"val_accuracy": m["val_accuracy"]} for tag, m in mean.items()},
                  config.get("incumbent", ""))
  md = [config.description + "\n",
        f"Chosen on mean validation accuracy: **{choice['recipe']}**"
        f"{_incumbent_note(config)}.\n",
        "| recipe | validation acc (decides) | test acc (reported) |", "|---|---|---|"]
  for tag, m in mean.items():
    md.append(f"| {tag} | " + " | ".join(
        mean_std(m[c], std[tag][c]) if c in m else "-" for c in COLUMNS) + " |")
  files = {"recipes.png": _chart(
      workdir, mean, std, f"{_label(config)}: mean ± std over seeds "
                          f"{', '.join(str(s) for s in aggregate['seeds'])}")}
  return md, {"choice": choice, "files": files}
