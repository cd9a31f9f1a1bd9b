"""Paper experiments end to end: train -> extract -> fuse / IGR-hash -> index -> evaluate.

`bin/reproduce.py` loads an experiment config (configs/experiments/<name>.py) and calls
`run_experiment`; nothing in the library imports this module. Every stage is skipped when its
outputs exist in the workdir (training resumes from its newest orbax checkpoint).
"""

import json
import os
import time

from absl import logging
import numpy as np

from cbir_jax import atomic, jobs
from cbir_jax.data.datasets import VALIDATION
from cbir_jax.eval import plots, protocol
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract, fuse
from cbir_jax.index import BinaryIndex, FloatIndex
from cbir_jax.train import trainer

_PAPER_KS = (10, 20, 30, 40, 50)


class Stages:
  """The cached stages of one experiment in one workdir (models restored once per tag)."""

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self._restored = {}
    self.seconds = {"train": 0.0, "extract": 0.0, "search": 0.0}

  def train(self, tag: str) -> dict:
    """Trains model `tag` (resuming); cached in train/<tag>/train_result.json."""
    path = os.path.join(self.workdir, "train", tag)
    marker = os.path.join(path, "train_result.json")
    if os.path.exists(marker):
      with open(marker, encoding="utf-8") as f:
        return json.load(f)
    model_config = self.config.models[tag]
    if model_config.get("imported_weights", ""):  # Imported, not trained (e.g. ImageNet AlexNet).
      return {"imported": os.path.basename(model_config.imported_weights)}
    logging.info("stage train: %s -> %s", tag, path)
    start = time.perf_counter()
    result = trainer.train_and_evaluate(self.config.models[tag], path)
    self.seconds["train"] += time.perf_counter() - start
    out = {k: float(v) for k, v in result.metrics.items()}
    if "train_accuracy" not in out:  # Trained before (e.g. an interrupted run): read its log.
      out.update(_logged_training(os.path.join(path, "metrics.jsonl")))
    atomic.write_json(marker, out)
    return out

  def features(self, tag: str, endpoint: str, split: str, subset: int = -1,
               carve: bool = False):
    """(features f32[n, d], labels int32[n], ids int64[n]) of `split` (cached in features/).

    subset > 0: a stratified subset of that many images, seeded by the experiment's seed.
    carve: the split without the validation part its model was not trained on.
    """
    folder = os.path.join(self.workdir, "features")
    os.makedirs(folder, exist_ok=True)
    name = (f"{tag}_{endpoint}_{split}" + ("_fit" if carve else "")
            + (f"_{subset}" if subset > 0 else ""))
    path = os.path.join(folder, f"{name}.npy")
    if not os.path.exists(path):
      logging.info("stage extract: %s %s on %s -> %s", tag, endpoint, split, path)
      start = time.perf_counter()
      if tag not in self._restored:
        m = self.config.models[tag]
        self._restored[tag] = (
            jobs.import_weights(m.imported_weights, m.imported_model)
            if m.get("imported_weights", "") else
            jobs.restore(os.path.join(self.workdir, "train", tag)))
      jobs.extract_split(self._restored[tag], split, endpoint, path,
                         batch_size=int(self.config.extract_batch_size),
                         dataset=self.config.models[tag].dataset,
                         seed=int(self.config.models[tag].seed), subset=int(subset),
                         subset_seed=int(self.config.seed), carve_validation=carve)
      self.seconds["extract"] += time.perf_counter() - start
    saved = extract.load_features(path, mmap=False)
    return np.asarray(saved.features), saved.labels, saved.ids

  def evaluate(self, name: str, index, queries, query_labels, database_labels):
    """Warm-up search (compiles), then protocol.evaluate_search timed on the warm index."""
    c = self.config
    n = len(database_labels)
    index.search(queries, n)  # Same shapes as the timed call: compile outside the timing.
    result = protocol.evaluate_search(name, index.search, queries, query_labels, database_labels,
                                      protocol=c.protocol, ks=tuple(c.ks),
                                      recall_max=int(c.recall_max))
    self.seconds["search"] += result.search_seconds
    logging.info("%s: %s", name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result

  def evaluate_sealed(self, name: str, index, sealed: protocol.SealedQueries, vectors,
                      database_labels):
    """`evaluate` for held-out queries whose labels only the final score reads."""
    c = self.config
    index.search(vectors, len(database_labels))  # Compile outside the timing.
    result = sealed.evaluate(name, index.search, database_labels, vectors=vectors,
                             ks=tuple(c.ks), recall_max=int(c.recall_max))
    self.seconds["search"] += result.search_seconds
    logging.info("%s: %s", name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result


def _logged_training(path: str) -> dict:
  """Last logged train loss/accuracy and the summed logged step time of a metrics.jsonl."""
  out, last_step, seconds = {}, 0, 0.0
  if not os.path.exists(path):
    return out
  with open(path, encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      if "accuracy" in record and "eval_accuracy" not in record:
        out["train_loss"], out["train_accuracy"] = record["loss"], record["accuracy"]
        seconds += record.get("step_seconds", 0.0) * (record["step"] - last_step)
        last_step = record["step"]
  out["logged_step_seconds"] = seconds
  return out


def _float_index(database):
  index = FloatIndex(database.shape[1])
  index.add(np.ascontiguousarray(database, dtype=np.float32))
  return index


def _ks_columns(ks):
  return [f"paper_map@{k}" for k in ks], [f"Top{k}" for k in ks]


# ----------------------------------------------------------------------------- Corel (seed 000)


def _validating(config) -> bool:
  """Whether the experiment carves a validation split (`validation_fraction` > 0) for choices."""
  return float(config.get("validation_fraction", 0.0) or 0.0) > 0


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
  validating = heldout and _validating(config)

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
      return st.evaluate(name, _float_index(db), q, qlab, dblab)
    return st.evaluate_sealed(name, _float_index(db), sealed, q, dblab)

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
    options = {vname: (_float_index(fused(v, db_parts)).search, fused(v, val))
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
  cols, heads = _ks_columns(ks)
  paper = None  # The paper's Table 1 (Top10..Top50) beside ours: its protocol and k only.
  if not heldout and set(ks) <= set(_PAPER_KS):
    paper = {k: [v[_PAPER_KS.index(x)] for x in ks] for k, v in config.paper.items()}
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
  md += ["\n### Training\n", _training_table(train, "held-out acc")]
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
  return _finish(workdir, payload, "\n".join(md), files)


def _training_table(train: dict, eval_name: str) -> str:
  """Steps, last logged train accuracy, held-out accuracy and times of each trained model."""
  return protocol.markdown_table(
      train, ["steps", "train_accuracy", "eval_accuracy", "train_seconds", "logged_step_seconds"],
      headers=["steps", "train acc (last log)", eval_name, "train s (this run)",
               "sum of logged step s"],
      row_header="model", digits={"steps": 0, "train_seconds": 1, "logged_step_seconds": 1})


def _protocol_sentence(config, q: int, n: int) -> str:
  if config.protocol == "database":
    return (f"Every one of the {n} database images is a query (the training images themselves);"
            " each query's own entry is removed from its result list. Comparable to the paper.")
  return (f"{q} held-out queries (never trained on) against a database of {n} training images;"
          " the paper has no such protocol.")


def _finish(workdir: str, payload: dict, markdown: str, files: dict) -> dict:
  payload["files"] = sorted(files)
  atomic.write_json(os.path.join(workdir, "results.json"), payload)
  atomic.write_text(os.path.join(workdir, "results.md"), markdown)
  return {"markdown": markdown, "files": ["results.json", "results.md"] + sorted(files)}


# ----------------------------------------------------------------------------- schemes (seed 002)


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
  rows, sweeps, details, files = {}, {}, {}, {}
  ks = tuple(config.ks)
  validating = _validating(config)
  for family in config.families:
    dfs_tag = "dfs_" + family
    feats = {}
    for tag, endpoint in ((family, config.endpoints.backbone), (dfs_tag, config.endpoints.dfs)):
      db, dblab, _ = st.features(tag, endpoint, config.dataset.database_split,
                                 int(r.num_database), carve=validating)
      q, qlab, _ = st.features(tag, endpoint, config.dataset.query_split, int(r.num_queries))
      val = (st.features(tag, endpoint, VALIDATION, int(r.get("num_validation", -1)))
             if validating else None)
      feats[tag] = (db, q, val)
    sealed = protocol.SealedQueries(None, qlab)

    def final(name, index, vectors):
      return st.evaluate_sealed(name, index, sealed, vectors, dblab)

    def hashed(tag, b):
      """(encoder, index) of IGR top-b mean-threshold codes of `tag`'s database features."""
      enc = encoder_lib.HashEncoder(b, threshold=r.hash_threshold).fit(feats[tag][0], dblab)
      index = BinaryIndex(b)
      index.add(enc.encode(feats[tag][0]))
      return enc, index

    res = {"scheme 1": final(f"{family} scheme 1", _float_index(feats[family][0]),
                             feats[family][1]),
           "scheme 2": final(f"{family} scheme 2", _float_index(feats[dfs_tag][0]),
                             feats[dfs_tag][1])}
    d = feats[dfs_tag][0].shape[1]
    half = d // 2 if int(r.scheme3_bits) == -1 else int(r.scheme3_bits)
    bits_list = sorted({b for b in r.bits if b <= d} | {half})
    chosen, choice = {}, {}
    for tag in (dfs_tag, family):
      width = feats[tag][0].shape[1]
      options_bits = sorted({b for b in r.bits if b <= width} | {min(half, width)})
      if validating:
        val_vectors, val_labels = feats[tag][2][0], feats[tag][2][1]
        options = {}
        for b in options_bits:
          enc, index = hashed(tag, b)
          options[b] = (index.search, enc.encode(val_vectors))
        chosen[tag], scores = protocol.choose_on_validation(options, val_labels, dblab)
        choice[tag] = {"chosen_by": "validation mAP", "bits": chosen[tag],
                       "validation_map": {str(b): v for b, v in scores.items()}}
      else:
        chosen[tag] = min(half, width)
        choice[tag] = {"chosen_by": "configuration (scheme3_bits; no validation split)",
                       "bits": chosen[tag]}
    sweep = protocol.Sweep(f"{family} scheme 3 bits", "b")
    for b in bits_list:
      enc, index = hashed(dfs_tag, b)
      result = final(f"{family} scheme 3 b={b}", index, enc.encode(feats[dfs_tag][1]))
      sweep.add(b, dict(result.metrics, search_seconds=result.search_seconds))
      if b == chosen[dfs_tag]:
        res["scheme 3"] = result
    enc, index = hashed(family, chosen[family])
    res["backbone + IGR + hash"] = final(f"{family} backbone + IGR + hash b={chosen[family]}",
                                         index, enc.encode(feats[family][1]))
    head_bits = chosen[dfs_tag]
    sweeps[family] = sweep
    details[family] = {k: v.to_json() for k, v in res.items()}
    details[family]["bits_choice"] = choice
    rows[family] = {"backbone_acc": train[family].get("eval_accuracy"),
                    "dfs_acc": train[dfs_tag].get("eval_accuracy"), "bits": head_bits,
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
        " standard mean average precision over the whole ranking; time = one search of the "
        "whole query set (compiled beforehand).\n",
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
  for family, sweep in sweeps.items():
    md += [f"\n### Scheme 3 bit sweep, {family}\n", protocol.markdown_table(
        {f"b={v}": row for v, row in sweep.rows}, [f"paper_map@{k}" for k in ks] + ["map",
                                                                                  "search_seconds"],
        headers=[f"mAP@{k}" for k in ks] + ["mAP (full)", "search s"])]
  md += ["\n### Training\n", _training_table(train, "test acc")]
  payload = {"experiment": config.name, "scale": config.scale, "config": config.to_dict(),
             "train": train, "seconds": st.seconds, "rows": rows, "schemes": details,
             "bit_sweeps": {k: v.to_json() for k, v in sweeps.items()},
             "paper": config.paper.to_dict()}
  return _finish(workdir, payload, "\n".join(md), files)


def run_experiment(config, workdir: str) -> dict:
  """Runs the stages of `config.kind`; returns {"markdown", "files"}."""
  runners = {"corel_fusion": run_corel, "schemes": run_schemes}
  if config.kind not in runners:
    raise ValueError(f"unknown experiment kind {config.kind!r}; valid: {sorted(runners)}")
  return runners[config.kind](config, workdir)


# ------------------------------------------------------------------------------------- seeds


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
  "table1" / "rows" / "fusion_variants" / "schemes" (population std over the seeds)."""
  out = {"seeds": sorted(payloads), "mean": {}, "std": {}, "n": len(payloads)}
  for section in ("table1", "rows", "fusion_variants", "schemes", "train"):
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


def seeds_markdown(config, aggregate: dict) -> str:
  """The headline table as mean ± std over the seeds."""
  seeds = ", ".join(str(s) for s in aggregate["seeds"])
  md = [f"## {config.name} ({config.scale} scale): mean ± std over seeds {seeds}\n"]
  mean, std = aggregate["mean"], aggregate["std"]
  fmt = lambda m, d: f"{m:.4f} ± {d:.4f}"
  if "table1" in mean:
    cols = [f"paper_map@{k}" for k in config.ks] + ["map"]
    md.append("| feature | " + " | ".join([f"Top{k}" for k in config.ks] + ["mAP (full)"])
              + " |")
    md.append("|---" * (len(cols) + 1) + "|")
    for name, row in mean["table1"].items():
      cells = [fmt(row["metrics"][c], std["table1"][name]["metrics"][c]) for c in cols]
      md.append(f"| {name} | " + " | ".join(cells) + " |")
  if "rows" in mean:
    cols = [c for c in ("backbone_acc", "dfs_acc", "scheme 1 map", "scheme 2 map",
                        "scheme 3 map", "backbone + IGR + hash map")
            if all(c in r for r in mean["rows"].values())]
    md.append("| family | " + " | ".join(cols) + " |")
    md.append("|---" * (len(cols) + 1) + "|")
    for family, row in mean["rows"].items():
      md.append(f"| {family} | " + " | ".join(fmt(row[c], std["rows"][family][c])
                                              for c in cols) + " |")
  return "\n".join(md) + "\n"


def run_seeds(config, workdir: str, seeds) -> dict:
  """Runs the experiment once per seed (workdir/seed_<s>, each resumable) and writes the
  aggregate (results.json: every run's payload and mean / std; results.md) to `workdir`."""
  seeds = [int(s) for s in seeds]
  if len(set(seeds)) != len(seeds) or not seeds:
    raise ValueError(f"seeds must be distinct ints, got {seeds}")
  payloads = {}
  for seed in seeds:
    sub = os.path.join(workdir, f"seed_{seed}")
    os.makedirs(sub, exist_ok=True)
    run_experiment(with_seed(config, seed), sub)
    with open(os.path.join(sub, "results.json"), encoding="utf-8") as f:
      payloads[seed] = json.load(f)
  aggregate = aggregate_seeds(payloads)
  markdown = seeds_markdown(config, aggregate)
  payload = {"experiment": config.name, "scale": config.scale, "seeds": seeds,
             "aggregate": aggregate, "runs": {str(s): p for s, p in payloads.items()}}
  return _finish(workdir, payload, markdown, {})
