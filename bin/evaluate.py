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


from absl import app, flags

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


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  try:
    ks = tuple(int(k) for k in _KS.value)
  except ValueError:
    _fail(f"--ks must be integers, got {_KS.value}")
  if _RECALL_MAX.value < 1:
    _fail(f"--recall_max must be >= 1, got {_RECALL_MAX.value}")
  for flag in (_DATABASE, _QUERIES):
    if flag.value:
      launch.load_npy("evaluate", flag.name, flag.value, mmap=True)  # Exists, readable .npy.
  out = launch.output_dir("evaluate", "out", _OUT.value)

  # Imported after flag checks: keeps --help and flag errors fast.
  from cbir_jax import jobs  # pylint: disable=g-import-not-at-top
  from cbir_jax.eval import protocol  # pylint: disable=g-import-not-at-top
  try:
    result = jobs.evaluate_files(_DATABASE.value, out, queries=_QUERIES.value,
                                 index=_INDEX.value, ks=ks, recall_max=_RECALL_MAX.value,
                                 name=_NAME.value)
  except (ValueError, TypeError, FileNotFoundError) as e:
    _fail(str(e))
  cols = [f"{m}@{k}" for m in ("paper_map", "precision", "recall", "map") for k in ks]
  print(f"{_NAME.value}: {result.num_queries} queries, database {result.database_size}, "
        f"protocol {result.protocol}"
        + (" (each query's own entry removed)" if result.protocol == "database" else ""))
  print(protocol.markdown_table({_NAME.value: result.metrics}, cols + ["map"]), end="")
  print(f"search time for all queries: {result.search_seconds:.3f} s (includes compilation)")
  print(f"outputs in {out}: results.json, map_vs_k.png, pr_curve.png, recall_vs_returned.png")


def run() -> None:
  app.run(main, flags_parser=launch.flags_parser("evaluate"))


if __name__ == "__main__":
  run()
