"""Seed 000 on Corel-1K: Table 1, AL fusion variants, per-class table, Fig. 3 and Fig. 4."""

import os

import numpy as np

from cbir_jax.data.datasets import VALIDATION
from cbir_jax.eval import plots, protocol, ranking
from cbir_jax.experiments.stages import (PAPER_KS, Stages, finish, float_index, has_validation,
                                         ks_columns, mean_std, training_table)
from cbir_jax.features import fuse


def run_corel(config, workdir: str) -> dict:
  """Seed 000 on Corel-1K: Table 1, fusion variants, per-class table, Fig. 3 and Fig. 4.

  Held-out protocol with `validation_fraction` > 0: the fusion variant is chosen on validation
  queries carved from the database split (the models never trained on them) against the rest
  of the database, which is also the database of the final, sealed query scores. Otherwise
  (the paper's protocol, where the queries are the training images) the configured variant is
  used as is and no choice is made.
  """
  st = Stages(config, workdir)
  train = {tag: st.train(tag) for tag in config.models}
  db_split, q_split = config.dataset.database_split, config.dataset.query_split
  heldout = config.protocol == "heldout"
  validating = heldout and has_validation(config)

  def triple(tag_endpoint, split, carve=False):
    tag, endpoint = tag_endpoint.split(":")
    return st.features(tag, endpoint, split, carve=carve)

  def pair(tag_endpoint):
    db = triple(tag_endpoint, db_split, carve=validating)
    return db, (triple(tag_endpoint, q_split) if heldout else db)

  parts = {name: pair(spec) for name, spec in config.features.items()}
  (_, dblab, dbids), (_, qlab, qids) = next(iter(parts.values()))
  for name, ((_, lab, ids), (_, qlab2, qids2)) in parts.items():
    if not (np.array_equal(ids, dbids) and np.array_equal(qids, qids2)):
      raise ValueError(f"feature set {name} was extracted from other images (ids differ)")
  sealed = protocol.SealedQueries(None, qlab) if heldout else None

  def evaluate(name, db, q):
    if sealed is None:
      return st.evaluate(name, float_index(db), q, qlab, dblab)
    return st.evaluate_sealed(name, float_index(db), sealed, q, dblab)

  results = {name: evaluate(name, db, q) for name, ((db, _, _), (q, _, _)) in parts.items()}
  names = list(config.fusion.parts)
  variants_cfg = dict(config.fusion_variants.items())

  def fused(v, side):
    weights = list(v.weights) if v.get("weights", None) is not None else None
    return fuse.fuse([side[p] for p in names], normalize=v.normalize, weights=weights)

  choice = {"chosen_by": "configuration (no validation split: the paper's protocol)",
            "variant": None, "validation_scores": {}}
  chosen_cfg = config.fusion
  if validating:
    val = {n: triple(config.features[n], VALIDATION)[0] for n in names}
    vlab = triple(config.features[names[0]], VALIDATION)[1]
    db_parts = {n: parts[n][0][0] for n in names}
    options = {vname: (ranking.full_ranking_search(float_index(fused(v, db_parts))),
                       fused(v, val))
               for vname, v in variants_cfg.items()}
    best, scores = protocol.choose_on_validation(options, vlab, dblab, key="map",
                                                 ks=tuple(config.ks))
    chosen_cfg = variants_cfg[best]
    choice = {"chosen_by": f"validation mAP ({len(vlab)} validation queries carved from "
                           f"{db_split}, never trained on)", "variant": best,
              "validation_scores": scores}
  variants = {}
  for vname, v in list(variants_cfg.items()) + [("chosen", chosen_cfg)]:
    db = fused(v, {n: parts[n][0][0] for n in names})
    q = fused(v, {n: parts[n][1][0] for n in names})
    label = config.fusion.name if vname == "chosen" else f"{config.fusion.name}[{vname}]"
    variants[label] = evaluate(label, db, q)
  table1 = {config.fusion.name: variants[config.fusion.name]}
  first_k = f"paper_map@{config.ks[0]}"
  table1.update(sorted(results.items(), key=lambda kv: -kv[1].metrics[first_k]))

  sweep = protocol.Sweep("LeNet-L K sweep (F6)", "K")
  for lk in config.lk_sweep.widths:  # Reported as the paper's Fig. 3; no choice is made.
    tag = f"lenet_lk{lk}"
    (db, _, _), (q, _, _) = pair(f"{tag}:{config.lk_sweep.endpoint}")
    sweep.add(int(lk), evaluate(f"F6 K={lk}", db, q).metrics)

  ks = tuple(config.ks)
  cols, heads = ks_columns(ks)
  paper = None  # The paper's Table 1 (Top10..Top50) beside ours: its protocol and k only.
  if not heldout and set(ks) <= set(PAPER_KS):
    paper = {k: [v[PAPER_KS.index(x)] for x in ks] for k, v in config.paper.items()}
  files = {}
  md = [f"## {config.name} ({config.scale} scale, protocol: {config.protocol})\n",
        _protocol_sentence(config, len(qlab), len(dblab)) + "\n",
        "### Table 1: mAP(Top k), seed 000's formula (3)\n",
        protocol.markdown_table({k: r.metrics for k, r in table1.items()}, cols + ["map"],
                                headers=heads + ["mAP (full)"], reference=paper)]
  md += [f"\n### AL fusion variants\n\nChosen by {choice['chosen_by']}"
         + (f": {choice['variant']}" if choice["variant"] else "") + ".\n",
         protocol.markdown_table({k: r.metrics for k, r in variants.items()}, cols + ["map"],
                                 headers=heads + ["mAP (full)"])]
  al = variants[config.fusion.name]
  md += [f"\n### Per-class mAP(Top k) of {config.fusion.name}\n",
         protocol.markdown_table({str(c): row for c, row in al.per_class.items()}, cols,
                                 headers=heads, row_header="class")]
  if sweep.rows:
    md += ["\n### K sweep (LeNet-L F6), Fig. 3\n",
           protocol.markdown_table({f"K={v}": row for v, row in sweep.rows}, cols + ["map"],
                                   headers=heads + ["mAP (full)"])]
    best_k, best = sweep.best(cols[0])
    md.append(f"\nBest K by {heads[0]}: {best_k} ({best:.4f}).\n")
    files["lk_sweep.png"] = plots.curves(
        os.path.join(workdir, "lk_sweep.png"), sweep.values(),
        {h: sweep.series(c) for c, h in zip(cols, heads)}, xlabel="K (width of layer L-K)",
        ylabel="mAP(Top k)", title=f"{config.name}: LeNet-L F6 for each K (Fig. 3)")
  md += ["\n### Training\n", training_table(train, "held-out acc")]
  files["map_vs_k.png"] = plots.curves(
      os.path.join(workdir, "map_vs_k.png"), np.array(ks),
      {k: np.array([r.metrics[c] for c in cols]) for k, r in table1.items()},
      reference={f"{k} (paper)": np.array(v) for k, v in (paper or {}).items()},
      xlabel="k (images returned)", ylabel="mAP(Top k)", title=f"{config.name}: Table 1")
  files["recall_vs_returned.png"] = plots.curves(
      os.path.join(workdir, "recall_vs_returned.png"),
      np.arange(1, len(al.recall_curve) + 1),
      {k: r.recall_curve for k, r in table1.items()}, xlabel="images returned",
      ylabel="recall", title=f"{config.name}: recall (Fig. 4)")
  files["pr_curves.png"] = plots.pr_curves(
      os.path.join(workdir, "pr_curves.png"),
      {k: (r.pr_precision, r.pr_recall) for k, r in table1.items()},
      title=f"{config.name}: precision-recall")
  payload = {"experiment": config.name, "scale": config.scale, "protocol": config.protocol,
             "config": config.to_dict(), "train": train, "seconds": st.seconds,
             "table1": {k: r.to_json() for k, r in table1.items()},
             "fusion_variants": {k: r.to_json() for k, r in variants.items()},
             "fusion_choice": choice,
             "lk_sweep": sweep.to_json(), "paper": paper}
  return finish(workdir, payload, "\n".join(md), files)


def _protocol_sentence(config, q: int, n: int) -> str:
  if config.protocol == "database":
    return (f"Every one of the {n} database images is a query (the training images themselves);"
            " each query's own entry is removed from its result list. Comparable to the paper.")
  return (f"{q} held-out queries (never trained on) against a database of {n} training images;"
          " the paper has no such protocol.")


def seeds_report(config, aggregate: dict, workdir: str) -> tuple[list[str], dict]:
  """(markdown lines, {}) over seeds: Table 1 (each feature's Top k and full mAP) as mean ±
  std. `workdir` is unused (the per-seed figures stay in their runs)."""
  del workdir
  mean, std = aggregate["mean"].get("table1"), aggregate["std"].get("table1")
  if not mean:
    return [], {}
  cols, heads = ks_columns(config.ks)
  cols, heads = cols + ["map"], heads + ["mAP (full)"]
  md = ["| feature | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
  for name, row in mean.items():
    md.append(f"| {name} | " + " | ".join(
        mean_std(row["metrics"][c], std[name]["metrics"][c]) for c in cols) + " |")
  return md, {}
