"""Seed 002: schemes 1/2/3 per DFS-Net family, accuracy, mAP, search time, bit sweeps."""

import os

import numpy as np

from cbir_jax.data.datasets import VALIDATION
from cbir_jax.eval import plots, protocol, ranking, selection
from cbir_jax.experiments.stages import (Stages, finish, float_index, has_validation,
                                         mean_std, training_table)
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import igr
from cbir_jax.index import BinaryIndex

# The selection comparison of each family's DFS features (eval.selection.METHODS).
SELECTION_METHODS = ("igr_hamming", "igr_mrmr_hamming", "random_hamming", "pca_hamming")


def run_schemes(config, workdir: str) -> dict:
  """Seed 002: schemes 1/2/3 per family, classification accuracy, mAP, search time, bit sweep.

  Scheme 3's b: with `validation_fraction` > 0 it is the b of `retrieval.bits` with the best
  validation mAP (validation queries carved from the training split, never trained on, against
  the database); otherwise `retrieval.scheme3_bits` (-1: half the width, the paper's best
  region). The whole b sweep is reported on the test queries either way, and so is the paper's
  extra comparison: the plain backbone's features + IGR + hash (b chosen the same way).
  """
  st = Stages(config, workdir)
  train = {tag: st.train(tag) for tag in config.models}
  r = config.retrieval
  rows, sweeps, details, files, selections, layouts = {}, {}, {}, {}, {}, {}
  ks = tuple(config.ks)
  validating = has_validation(config)
  for family in config.families:
    dfs_tag = "dfs_" + family
    # A "<dfs tag>_v1" model in the config: the same DFS-Net with the module's v1 layout,
    # compared with the Fig. 2 layout on schemes 2 and 3 (issue 21 item 4).
    v1_tag = dfs_tag + "_v1"
    has_v1 = v1_tag in config.models
    feats = {}
    tags = ((family, config.endpoints.backbone), (dfs_tag, config.endpoints.dfs)) + (
        ((v1_tag, config.endpoints.dfs),) if has_v1 else ())
    for tag, endpoint in tags:
      # The test database is the whole training split (or its seeded subset), the validation
      # tenth included; validation queries are searched against the rest (`fit`).
      db, dblab, dbids = st.features(tag, endpoint, config.dataset.database_split,
                                     int(r.num_database))
      q, qlab, _ = st.features(tag, endpoint, config.dataset.query_split, int(r.num_queries))
      val = None
      if validating:
        val = st.features(tag, endpoint, VALIDATION, int(r.get("num_validation", -1)))
        fit = ~np.isin(dbids, val[2])
        val = (val[0], val[1], db[fit], dblab[fit])
      feats[tag] = (db, q, val)
    sealed = protocol.SealedQueries(None, qlab)
    # The b sweep and the selection comparison rank for many b: on a seeded, stratified subset
    # of the test queries (`sweep_queries`, -1: all), the headline schemes on every query.
    sub = protocol.stratified_subset(qlab, int(r.get("sweep_queries", -1)), int(config.seed))
    sealed_sub = protocol.SealedQueries(None, qlab[sub])

    def final(name, index, vectors):
      return st.evaluate_sealed(name, index, sealed, vectors, dblab)

    def final_sub(name, index, vectors):
      return st.evaluate_sealed(name, index, sealed_sub, vectors[sub], dblab)

    rates = {}  # (tag, on the validation's database) -> IGR rates, which do not depend on b

    def hashed(tag, b, on_fit=False):
      """(encoder, index) of IGR top-b mean-threshold codes of `tag`'s database, or with
      `on_fit` of the part of it that validation queries search."""
      database, labels = feats[tag][2][2:] if on_fit else (feats[tag][0], dblab)
      if (tag, on_fit) not in rates:
        rates[tag, on_fit] = igr.information_gain_rate(database, labels)
      enc = encoder_lib.HashEncoder(b, threshold=r.hash_threshold).fit(
          database, labels, rates=rates[tag, on_fit])
      index = BinaryIndex(b)
      index.add(enc.encode(database))
      return enc, index

    res = {"scheme 1": final(f"{family} scheme 1", float_index(feats[family][0]),
                             feats[family][1]),
           "scheme 2": final(f"{family} scheme 2", float_index(feats[dfs_tag][0]),
                             feats[dfs_tag][1])}
    d = feats[dfs_tag][0].shape[1]
    half = d // 2 if int(r.scheme3_bits) == -1 else int(r.scheme3_bits)
    bits_list = sorted({b for b in r.bits if b <= d} | {half})
    chosen, choice = {}, {}
    for tag in (dfs_tag, family) + ((v1_tag,) if has_v1 else ()):
      width = feats[tag][0].shape[1]
      options_bits = sorted({b for b in r.bits if b <= width} | {min(half, width)})
      if validating:
        val_vectors, val_labels, _, fit_labels = feats[tag][2]
        options = {}
        for b in options_bits:
          enc, index = hashed(tag, b, on_fit=True)
          options[b] = (ranking.full_ranking_search(index), enc.encode(val_vectors))
        chosen[tag], scores = protocol.choose_on_validation(options, val_labels, fit_labels)
        choice[tag] = {"chosen_by": "validation mAP", "bits": chosen[tag],
                       "validation_map": {str(b): v for b, v in scores.items()}}
      else:
        chosen[tag] = min(half, width)
        choice[tag] = {"chosen_by": "configuration (scheme3_bits; no validation split)",
                       "bits": chosen[tag]}
    sweep = protocol.Sweep(f"{family} scheme 3 bits", "b")
    for b in bits_list:
      enc, index = hashed(dfs_tag, b)
      codes = enc.encode(feats[dfs_tag][1])
      result = final_sub(f"{family} scheme 3 b={b}", index, codes)
      sweep.add(b, dict(result.metrics, search_seconds=result.search_seconds))
      if b == chosen[dfs_tag]:
        res["scheme 3"] = (result if len(sub) == len(qlab) else
                           final(f"{family} scheme 3 b={b}", index, codes))
    enc, index = hashed(family, chosen[family])
    res["backbone + IGR + hash"] = final(f"{family} backbone + IGR + hash b={chosen[family]}",
                                         index, enc.encode(feats[family][1]))
    if has_v1:
      enc, index = hashed(v1_tag, chosen[v1_tag])
      v1_s2 = final(f"{family} v1 layout scheme 2", float_index(feats[v1_tag][0]),
                    feats[v1_tag][1])
      v1_s3 = final(f"{family} v1 layout scheme 3 b={chosen[v1_tag]}", index,
                    enc.encode(feats[v1_tag][1]))
      layouts[family] = {
          "fig2": {"dfs_acc": train[dfs_tag].get("test_accuracy"),
                   "scheme 2 map": res["scheme 2"].metrics["map"],
                   "scheme 3 map": res["scheme 3"].metrics["map"], "bits": chosen[dfs_tag]},
          "v1": {"dfs_acc": train[v1_tag].get("test_accuracy"),
                 "scheme 2 map": v1_s2.metrics["map"], "scheme 3 map": v1_s3.metrics["map"],
                 "bits": chosen[v1_tag]}}
    # IGR against random, PCA and a redundancy-aware IGR on the DFS features (a report on the
    # test queries; no choice is made from it).
    compare_bits = sorted({b for b in r.get("selection_bits", ()) if b <= d} | {chosen[dfs_tag]})
    selections[family] = selection.compare_selection(
        feats[dfs_tag][0], dblab, feats[dfs_tag][1][sub], qlab[sub], bits=compare_bits,
        paper_k=min(ks), random_trials=int(r.get("random_trials", 3)), seed=int(config.seed),
        threshold=r.hash_threshold, methods=SELECTION_METHODS)
    by_method = {m: [row["map"] for row in selections[family] if row["method"] == m]
                 for m in SELECTION_METHODS}
    files[f"selection_{family}.png"] = plots.curves(
        os.path.join(workdir, f"selection_{family}.png"), compare_bits, by_method,
        xlabel="hash bits b", ylabel="mAP (whole ranking)",
        title=f"{config.name}: {family} DFS features, which b dimensions")
    head_bits = chosen[dfs_tag]
    sweeps[family] = sweep
    details[family] = {k: v.to_json() for k, v in res.items()}
    details[family]["bits_choice"] = choice
    rows[family] = {"backbone_acc": train[family].get("test_accuracy"),
                    "dfs_acc": train[dfs_tag].get("test_accuracy"), "bits": head_bits,
                    "backbone_bits": chosen[family],
                    "dim": d, **{f"{k} map": v.metrics["map"] for k, v in res.items()},
                    **{f"{k} s": v.search_seconds for k, v in res.items()}}
    files[f"bits_sweep_{family}.png"] = plots.curves(
        os.path.join(workdir, f"bits_sweep_{family}.png"), sweep.values(),
        {"scheme 3 (IGR + hash, Hamming)": sweep.series("map"),
         "scheme 2 (DFS, Euclidean)": np.full(len(bits_list), res["scheme 2"].metrics["map"])},
        xlabel="hash bits b", ylabel="mAP (whole ranking)", title=f"{config.name}: {family}")
    files[f"pr_curves_{family}.png"] = plots.pr_curves(
        os.path.join(workdir, f"pr_curves_{family}.png"),
        {k: (v.pr_precision, v.pr_recall) for k, v in res.items()},
        title=f"{config.name}: {family}")
  nq, nd = len(qlab), len(dblab)
  md = [f"## {config.name} ({config.scale} scale)\n",
        f"{nq} test-split queries against a {nd}-image database from the training split; mAP ="
        " standard mean average precision over the whole ranking (seed 002's MAP); time = one "
        "warm search of every query for its top max(ks) with the kernels (compiled "
        "beforehand).\n",
        protocol.markdown_table(
            rows, ["backbone_acc", "dfs_acc", "scheme 1 map", "scheme 2 map", "scheme 3 map",
                   "bits", "backbone + IGR + hash map", "backbone_bits", "scheme 1 s",
                   "scheme 2 s", "scheme 3 s"],
            headers=["backbone acc", "DFS-Net acc", "S1 mAP", "S2 mAP", "S3 mAP", "S3 bits",
                     "backbone+IGR+hash mAP", "its bits", "S1 s", "S2 s", "S3 s"],
            row_header="family",
            digits={"bits": 0, "backbone_bits": 0, "scheme 1 s": 3, "scheme 2 s": 3,
                    "scheme 3 s": 3}),
        "\nS3 bits (and the backbone comparison's): " + (
            "chosen on validation mAP (validation queries carved from the training split, "
            "never trained on)" if validating else
            "configured (scheme3_bits, -1 = half the width); no validation split") + ".\n"]
  if len(config.paper):
    md += ["\nPaper (DFS-Net accuracy %, scheme 3 mAP %, scheme 3 time s):\n",
           protocol.markdown_table({k: dict(zip(("acc", "map", "s"), v))
                                    for k, v in config.paper.items()}, ["acc", "map", "s"],
                                   headers=["DFS-Net acc %", "S3 mAP %", "S3 s"],
                                   row_header="family", digits=2)]
  n_sub = len(sub) if config.families else 0
  sweep_note = ("" if n_sub == nq else
                f" ({n_sub} of the {nq} test queries: a seeded, stratified subset)")
  for family, sweep in sweeps.items():
    md += [f"\n### Scheme 3 bit sweep, {family}{sweep_note}\n", protocol.markdown_table(
        {f"b={v}": row for v, row in sweep.rows}, [f"paper_map@{k}" for k in ks] + ["map",
                                                                                  "search_seconds"],
        headers=[f"mAP@{k}" for k in ks] + ["mAP (full)", "search s"])]
  for family, sel in selections.items():
    md += [f"\n### Which b dimensions to hash, {family} DFS features (whole-ranking mAP)"
           f"{sweep_note}\n",
           "igr = the paper's IGR order; igr_mrmr = IGR with a redundancy penalty (weight 1); "
           "random = mean of seeded draws; pca = top principal components.\n",
           selection.format_table(sel)]
  for family, both in layouts.items():
    md += [f"\n### DFS module layout, {family}: Fig. 2 (default) against v1 (docs/MODELS.md)\n",
           protocol.markdown_table(both, ["dfs_acc", "scheme 2 map", "scheme 3 map", "bits"],
                                   headers=["DFS-Net test acc", "S2 mAP", "S3 mAP", "S3 bits"],
                                   row_header="layout", digits={"bits": 0})]
  md += ["\n### Training\n", training_table(train, "test acc")]
  payload = {"experiment": config.name, "scale": config.scale, "config": config.to_dict(),
             "train": train, "seconds": st.seconds, "rows": rows, "schemes": details,
             "bit_sweeps": {k: v.to_json() for k, v in sweeps.items()},
             "selection_comparison": selections, "layouts": layouts,
             "paper": config.paper.to_dict()}
  return finish(workdir, payload, "\n".join(md), files)


def seeds_report(config, aggregate: dict, workdir: str,
                 payloads: dict[int, dict]) -> tuple[list[str], dict]:
  """(markdown lines, {}) over seeds: per family the accuracies and each scheme's mAP as mean
  ± std. `config`, `workdir` and `payloads` are unused."""
  del config, workdir, payloads
  mean, std = aggregate["mean"].get("rows"), aggregate["std"].get("rows")
  if not mean:
    return [], {}
  cols = [c for c in ("backbone_acc", "dfs_acc", "scheme 1 map", "scheme 2 map",
                      "scheme 3 map", "backbone + IGR + hash map")
          if all(c in r for r in mean.values())]
  md = ["| family | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  for family, row in mean.items():
    md.append(f"| {family} | " + " | ".join(mean_std(row[c], std[family][c])
                                            for c in cols) + " |")
  return md, {}
