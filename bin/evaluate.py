"""Evaluate saved features or a saved index against queries: metric table, JSON and PNG figures.

  # Held-out queries against a database (both .npy feature files with .labels.npy sidecars,
  # as written by bin/extract.py or bin/reproduce.py):
  python bin/evaluate.py --database=runs/x/features/db.npy --queries=runs/x/features/q.npy \
      --out=runs/x/eval
  # Seed 000's protocol: every database item queries the database, its own entry removed:
  python bin/evaluate.py --database=runs/x/features/db.npy --out=runs/x/eval_self
  # A saved index (FloatIndex or BinaryIndex file); --database supplies labels (and ids):
  python bin/evaluate.py --index=runs/x/binary.index --database=runs/x/features/db.npy \
      --queries=runs/x/features/q_codes.npy --out=runs/x/eval_hash

Query files hold f32[q, d] features (or u32[q, w] codes for a BinaryIndex) with labels in
`<stem>.labels.npy`. Prints paper mAP@k (seed 000's formula 3), P@k, R@k, standard mAP@k and
mAP over the whole ranking; writes results.json, map_vs_k.png, pr_curve.png and
recall_vs_returned.png to --out.
"""

import os

from absl import app, flags
import numpy as np

from cbir_jax._bin import launch

_DATABASE = flags.DEFINE_string("database", None, "Database features .npy with a "
                                "<stem>.labels.npy sidecar (and optionally <stem>.ids.npy).")
_QUERIES = flags.DEFINE_string("queries", None, "Query features (or codes) .npy with a "
                               "<stem>.labels.npy sidecar; omitted: the database queries itself "
                               "with self exclusion.")
_INDEX = flags.DEFINE_string("index", None, "Saved FloatIndex/BinaryIndex to search instead of "
                             "an exact index built from --database.")
_KS = flags.DEFINE_list("ks", ["10", "20", "30", "40", "50"], "Cut-offs k for the table.")
_RECALL_MAX = flags.DEFINE_integer("recall_max", 100, "Length of the recall-vs-returned curve.")
_NAME = flags.DEFINE_string("name", "features", "Name shown in the table and figures.")
_OUT = flags.DEFINE_string("out", None, "Output folder for results.json and the PNGs.")
flags.mark_flags_as_required(["database", "out"])


def _fail(message: str) -> None:
  launch.fail("evaluate", message)


def _load_with_labels(path: str, flag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """(array, labels int[n], ids int64[n] or None) from `path` and its sidecars."""
  if not path.endswith(".npy"):
    _fail(f"--{flag} must be a .npy file, got {path}")
  if not os.path.exists(path):
    _fail(f"--{flag} file {path} does not exist")
  stem = path[:-len(".npy")]
  if not os.path.exists(stem + ".labels.npy"):
    _fail(f"--{flag} needs labels in {stem}.labels.npy")
  array = launch.load_npy("evaluate", flag, path)
  labels = launch.load_npy("evaluate", flag, stem + ".labels.npy")
  if array.ndim != 2 or labels.shape != (array.shape[0],):
    _fail(f"--{flag}: expected (n, d) rows with n labels, got {array.shape} and {labels.shape}")
  ids = (launch.load_npy("evaluate", flag, stem + ".ids.npy")
         if os.path.exists(stem + ".ids.npy") else None)
  return array, labels, ids


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  try:
    ks = tuple(int(k) for k in _KS.value)
  except ValueError:
    _fail(f"--ks must be integers, got {_KS.value}")
  if not ks or min(ks) < 1:
    _fail(f"--ks must be >= 1, got {_KS.value}")
  if _RECALL_MAX.value < 1:
    _fail(f"--recall_max must be >= 1, got {_RECALL_MAX.value}")
  database, db_labels, db_ids = _load_with_labels(_DATABASE.value, "database")
  n = len(db_labels)
  if _QUERIES.value:
    queries, q_labels, _ = _load_with_labels(_QUERIES.value, "queries")
    protocol_name, limit = "heldout", n
  else:
    queries, q_labels, protocol_name, limit = database, db_labels, "database", n - 1
  if max(ks) > limit:
    _fail(f"--ks must be <= {limit} (the ranking length), got {max(ks)}")
  out = launch.output_dir("evaluate", "out", _OUT.value)

  # Imported after flag checks: keeps --help and flag errors fast.
  from cbir_jax.eval import plots, protocol  # pylint: disable=g-import-not-at-top
  from cbir_jax.index import FloatIndex, load_index  # pylint: disable=g-import-not-at-top
  if _INDEX.value:
    try:
      index = load_index(_INDEX.value)
    except (FileNotFoundError, ValueError) as e:
      _fail(f"cannot load --index {_INDEX.value}: {e}")
    if len(index) != n:
      _fail(f"--index holds {len(index)} items but --database has {n} labels")
    # The index returns its stored ids; map them to database positions.
    known = db_ids if db_ids is not None else np.arange(n)
    order = np.argsort(known, kind="stable")
    if not np.array_equal(np.sort(index.ids), known[order]):
      _fail("--index ids do not match the --database ids (or positions 0..n-1)")

    def search(q, k):
      distances, ids = index.search(q, k)
      return distances, np.where(ids >= 0, order[np.searchsorted(known[order], ids)], -1)
  else:
    index = FloatIndex(database.shape[1])
    index.add(np.ascontiguousarray(database, np.float32))
    search = index.search
  try:
    result = protocol.evaluate_search(_NAME.value, search, queries, q_labels, db_labels,
                                      protocol=protocol_name, ks=ks,
                                      recall_max=min(_RECALL_MAX.value, limit))
  except (ValueError, TypeError) as e:
    _fail(f"bad queries for this database/index: {e}")

  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(result.to_json(), f, indent=2, sort_keys=True)
  plots.curves(os.path.join(out, "map_vs_k.png"), np.array(ks),
               {_NAME.value: np.array([result.metrics[f"paper_map@{k}"] for k in ks])},
               xlabel="k (results returned)", ylabel="mAP(Top k), formula (3)")
  plots.pr_curves(os.path.join(out, "pr_curve.png"),
                  {_NAME.value: (result.pr_precision, result.pr_recall)})
  plots.curves(os.path.join(out, "recall_vs_returned.png"),
               np.arange(1, len(result.recall_curve) + 1), {_NAME.value: result.recall_curve},
               xlabel="results returned", ylabel="recall")
  cols = [f"{m}@{k}" for m in ("paper_map", "precision", "recall", "map") for k in ks]
  print(f"{_NAME.value}: {len(q_labels)} queries, database {n}, protocol {protocol_name}"
        + (" (each query's own entry removed)" if protocol_name == "database" else ""))
  print(protocol.markdown_table({_NAME.value: result.metrics}, cols + ["map"]), end="")
  print(f"search time for all queries: {result.search_seconds:.3f} s (includes compilation)")
  print(f"outputs in {out}: results.json, map_vs_k.png, pr_curve.png, recall_vs_returned.png")


def run() -> None:
  app.run(main, flags_parser=launch.flags_parser("evaluate"))


if __name__ == "__main__":
  run()
