"""Seed 000 on Corel-1K: Table 1, AL fusion variants, per-class table, Fig. 3 and Fig. 4."""

import os

import numpy as np

from cbir_jax.data.datasets import VALIDATION
from cbir_jax.eval import plots, protocol, ranking
from cbir_jax.experiments.stages import (PAPER_KS, Stages, finish, float_index, has_validation,
                                         ks_columns, mean_std, training_table)
from cbir_jax.features import fuse
from cbir_jax.kernels import expansion as expansion_lib


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
  expansion = None
  if validating and _expansion_grid(config):
    expansion = _choose_expansion(
        config, fused(chosen_cfg, {n: parts[n][0][0] for n in names}),
        fused(chosen_cfg, val), vlab, dblab,
        fused(chosen_cfg, {n: parts[n][1][0] for n in names}),
        variants[config.fusion.name], evaluate)
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
  if expansion is not None:
    md += _expansion_markdown(config, expansion, cols, heads)
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
  curves = dict(table1)
  if expansion is not None and expansion["choice"] != "none":
    curves[f"{config.fusion.name} + {expansion['choice']}"] = expansion["table"]["with"]
  files["map_vs_k.png"] = plots.curves(
      os.path.join(workdir, "map_vs_k.png"), np.array(ks),
      {k: np.array([r.metrics[c] for c in cols]) for k, r in curves.items()},
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
             "expansion": None if expansion is None else {
                 k: ({n: r.to_json() for n, r in v.items()} if k == "table" else v)
                 for k, v in expansion.items()},
             "lk_sweep": sweep.to_json(), "paper": paper}
  return finish(workdir, payload, "\n".join(md), files)


def _expansion_grid(config) -> list[tuple[int, int]]:
  """(dba_k, qe_k) pairs of config.expansion to choose from on validation ((0, 0): none); []
  when the config has no grid or only (0, 0)."""
  grid = config.get("expansion", None)
  if grid is None:
    return []
  pairs = [(int(a), int(b)) for a in grid.dba_k for b in grid.qe_k]
  return pairs if any(p != (0, 0) for p in pairs) else []


def expansion_name(dba_k: int, qe_k: int) -> str:
  """"none", "qe2", "dba3" or "dba3+qe2"."""
  parts = ([f"dba{dba_k}"] if dba_k else []) + ([f"qe{qe_k}"] if qe_k else [])
  return "+".join(parts) or "none"


def _augment(database: np.ndarray, dba_k: int, alpha: float) -> np.ndarray:
  """The database after DBA over dba_k neighbours (capped at its size); unit rows when dba_k
  <= 1 (what DBA with k = 1 gives, without its search)."""
  if dba_k <= 1:
    return np.asarray(expansion_lib.unit_rows(database))
  return np.asarray(expansion_lib.database_augmentation(database, min(dba_k, len(database)),
                                                        alpha=alpha))


def _query_expand(augmented: np.ndarray, queries: np.ndarray, qe_k: int, alpha: float
                  ) -> np.ndarray:
  """The queries after alpha-QE over qe_k neighbours (capped) of `augmented`; unchanged at 0."""
  if not qe_k:
    return queries
  return np.asarray(expansion_lib.alpha_query_expansion(
      queries, augmented, min(qe_k, len(augmented)), alpha=alpha))


def expand(database: np.ndarray, queries: np.ndarray, dba_k: int, qe_k: int, alpha: float
           ) -> tuple[np.ndarray, np.ndarray]:
  """(database, queries) after DBA over dba_k neighbours and alpha-QE over qe_k (k capped at
  the database size); with any expansion the database rows are unit vectors (DBA with k = 1
  when dba_k is 0); (0, 0) returns both unchanged."""
  if (dba_k, qe_k) == (0, 0):
    return database, queries
  db = _augment(database, dba_k, alpha)
  return db, _query_expand(db, queries, qe_k, alpha)


def _choose_expansion(config, db, val, vlab, dblab, queries, plain, evaluate) -> dict:
  """Chooses DBA / alpha-QE of the chosen fusion on validation mAP (the validation queries
  against the same database as the final scores; labels of the query split never read), then
  scores the sealed queries with it once. {"choice", "k_dba_k_qe", "chosen_by", "alpha",
  "validation_scores", "table": {"without": plain result, "with": expanded result}}."""
  alpha = float(config.expansion.alpha)
  grid = {expansion_name(a, b): (a, b) for a, b in _expansion_grid(config)}
  # Each DBA database (and its index) once per k_dba, shared by every k_qe and the final score;
  # (0, 0) searches the database as it is.
  augmented = {a: _augment(db, a, alpha) for a in sorted({a for a, b in grid.values()})}
  searches = {a: ranking.full_ranking_search(float_index(x)) for a, x in augmented.items()}
  plain_search = ranking.full_ranking_search(float_index(db))
  options = {}
  for name, (dba_k, qe_k) in grid.items():
    options[name] = ((plain_search, val) if (dba_k, qe_k) == (0, 0) else
                     (searches[dba_k], _query_expand(augmented[dba_k], val, qe_k, alpha)))
  best, scores = protocol.choose_on_validation(options, vlab, dblab, key="map",
                                               ks=tuple(config.ks))
  dba_k, qe_k = grid[best]
  with_ = plain if best == "none" else evaluate(
      f"{config.fusion.name} + {best}", augmented[dba_k],
      _query_expand(augmented[dba_k], queries, qe_k, alpha))
  # [k_dba, k_qe] as a list: a seeds aggregate averages numbers, not choices.
  return {"choice": best, "k_dba_k_qe": [dba_k, qe_k], "alpha": alpha,
          "chosen_by": f"validation mAP ({len(vlab)} validation queries)",
          "validation_scores": scores, "table": {"without": plain, "with": with_}}


def _expansion_markdown(config, expansion: dict, cols, heads) -> list[str]:
  """The expansion section: validation mAP over the grid, then the query scores with and
  without the chosen expansion."""
  grid = config.expansion
  name = config.fusion.name
  lines = [f"\n### {name} with database-side augmentation and query expansion\n",
           f"DBA over k_dba neighbours (itself included) and alpha-QE (alpha = "
           f"{expansion['alpha']:g}) over k_qe neighbours, both on the chosen {name} "
           "(`cbir_jax.kernels.expansion`); chosen by "
           f"{expansion['chosen_by']}: **{expansion['choice']}**.\n",
           "| validation mAP | " + " | ".join(f"k_qe={b}" for b in grid.qe_k) + " |",
           "|---" * (len(grid.qe_k) + 1) + "|"]
  for a in grid.dba_k:
    lines.append(f"| k_dba={a} | " + " | ".join(
        f"{expansion['validation_scores'][expansion_name(int(a), int(b))]:.4f}"
        for b in grid.qe_k) + " |")
  table = expansion["table"]
  lines += ["", protocol.markdown_table(
      {name: table["without"].metrics,
       f"{name} + {expansion['choice']}": table["with"].metrics},
      cols + ["map"], headers=heads + ["mAP (full)"])]
  return lines


def _protocol_sentence(config, q: int, n: int) -> str:
  if config.protocol == "database":
    return (f"Every one of the {n} database images is a query (the training images themselves);"
            " each query's own entry is removed from its result list. Comparable to the paper.")
  return (f"{q} held-out queries (never trained on) against a database of {n} training images;"
          " the paper has no such protocol.")


def seeds_report(config, aggregate: dict, workdir: str,
                 payloads: dict[int, dict]) -> tuple[list[str], dict]:
  """(markdown lines, {}) over seeds: Table 1 (each feature's Top k and full mAP) as mean ±
  std, and the chosen AL without / with its expansion when the runs chose one (each seed's
  choice from its payload). `workdir` is unused."""
  del workdir
  mean, std = aggregate["mean"].get("table1"), aggregate["std"].get("table1")
  if not mean:
    return [], {}
  cols, heads = ks_columns(config.ks)
  cols, heads = cols + ["map"], heads + ["mAP (full)"]

  def rows(m, s):
    return [f"| {name} | " + " | ".join(
        mean_std(row["metrics"][c], s[name]["metrics"][c]) for c in cols) + " |"
            for name, row in m.items()]

  md = ["| feature | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
  md += rows(mean, std)
  table = aggregate["mean"].get("expansion", {}).get("table")
  if table:
    choices = [f"seed {seed}: {payloads[seed]['expansion']['choice']}"
               for seed in aggregate["seeds"]]
    name = config.fusion.name
    md += ["", f"{name} re-ranked with the DBA / alpha-QE pair each seed chose on validation "
               f"({'; '.join(choices)}):", "",
           "| feature | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
    md += rows({f"{name} (plain)": table["without"], f"{name} + expansion": table["with"]},
               {f"{name} (plain)": aggregate["std"]["expansion"]["table"]["without"],
                f"{name} + expansion": aggregate["std"]["expansion"]["table"]["with"]})
  return md, {}
