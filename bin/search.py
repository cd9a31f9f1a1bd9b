"""Query by image: rank an index's database for a photo (or a folder of photos) and draw it.

  python bin/search.py --index=runs/demo/float.index --query=my_photo.jpg --k=10 --out=runs/q
  python bin/search.py --index=runs/demo/binary.index --query=photos/ --k=5
  python bin/search.py --index=runs/demo/float.index --query=my_photo.jpg --expand=3

--expand=N re-describes each query by itself plus its N nearest database vectors (alpha query
expansion, `cbir_jax.query.ExpandedSearch`) before ranking; float indexes only.

The index must record its provenance (`cbir_jax.features.provenance`): every index written by
cbir-demo, cbir-reproduce or the chain cbir-extract -> [cbir-hash ->] cbir-index build does. An
index built from bare vectors is searched with --query_features instead. Writes
contact_sheet.png (each query, then its ranked results with distance, class and id),
ranking.json and ranking.csv into --out, and prints the rankings.
"""

import os
import sys

from absl import app, flags, logging

from cbir_jax._bin import launch

_INDEX = flags.DEFINE_string("index", None, "Index file written by cbir-demo (float.index for "
                             "exact Euclidean, binary.index for Hamming over hashes).")
_QUERY = flags.DEFINE_string("query", None, "An image file, or a folder whose image files "
                             "(jpg, png, bmp, gif, tif, webp, ppm, pgm) are all used as queries.")
_K = flags.DEFINE_integer("k", 10, "Results per query, in [1, index size].")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <index folder>/search).")
_QUERY_FEATURES = flags.DEFINE_string(
    "query_features", None, "Instead of --query: a .npy of query vectors (float32 [q, d] for a "
    "float index, uint32 codes for a binary one), served --batch_size at a time like a server "
    "loop; prints resident memory (RSS) at the start and the end and writes ranking.npz.")
_TRAIN_WORKDIR, _WEIGHTS, _WEIGHTS_FORMAT = launch.define_model_override_flags()
flags.adopt_module_key_flags(launch)  # --help lists them
_BATCH = flags.DEFINE_integer("batch_size", 100, "Queries per search call with --query_features.")
_EXPAND = flags.DEFINE_integer(
    "expand", 0, "> 0: alpha query expansion at search time over this many nearest database "
    "vectors (float indexes only; the search then ranks unit vectors, distances 2 - 2 cos).")
_EXPAND_ALPHA = flags.DEFINE_float("expand_alpha", 3.0, "The expansion's weight exponent: "
                                   "neighbour i counts max(cos_i, 0) ** alpha (0: plain mean).")


def _serve_features(out: str) -> None:
  """--query_features mode: batched search loop with RSS at start, after warm-up and at end."""
  from cbir_jax import query  # pylint: disable=import-outside-toplevel
  launch.load_npy("search", "query_features", _QUERY_FEATURES.value, mmap=True)  # Readable.
  try:
    served = query.serve_query_file(_INDEX.value, _QUERY_FEATURES.value, _K.value, out,
                                    batch_size=_BATCH.value, progress=sys.stderr.isatty(),
                                    expand=_EXPAND.value, expand_alpha=_EXPAND_ALPHA.value)
  except (ValueError, TypeError, FileNotFoundError, OSError) as e:
    _fail(str(e))
  rss = served.rss_mib
  print(f"served {served.queries} queries in batches of {_BATCH.value} against "
        f"{served.index_size} vectors; RSS MiB: start {rss['start']:.1f}, after first batch "
        f"{rss['warm']:.1f}, end {rss['end']:.1f} (growth after warm-up "
        f"{rss['end'] - rss['warm']:+.1f})")
  print(f"outputs in {out}:\n  ranking {served.path}")


def _fail(message: str) -> None:
  launch.fail("search", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if not _INDEX.value:
    _fail("--index is required")
  if not os.path.isfile(_INDEX.value):
    _fail(f"--index {_INDEX.value!r} is not a file")
  if _K.value < 1:  # A flag check before any loading; the index checks k <= its size.
    _fail(f"--k must be >= 1, got {_K.value}")
  if _EXPAND.value < 0:
    _fail(f"--expand must be >= 0 (0: no query expansion), got {_EXPAND.value}")
  if not 0 <= _EXPAND_ALPHA.value < float("inf"):
    _fail(f"--expand_alpha must be a finite number >= 0, got {_EXPAND_ALPHA.value}")
  out = os.path.abspath(_OUT.value or os.path.join(os.path.dirname(_INDEX.value), "search"))
  if _QUERY_FEATURES.value:
    if _QUERY.value:
      _fail("give --query (images) or --query_features (a .npy), not both")
    return _serve_features(out)
  if not _QUERY.value:
    _fail("--query is required (an image file or a folder of images), or --query_features")
  if not os.path.exists(_QUERY.value):
    _fail(f"--query {_QUERY.value!r} does not exist")

  from cbir_jax import query
  try:
    result = query.search_images(_INDEX.value, _QUERY.value, _K.value, out,
                                 train_workdir=_TRAIN_WORKDIR.value, weights=_WEIGHTS.value,
                                 weights_format=_WEIGHTS_FORMAT.value, expand=_EXPAND.value,
                                 expand_alpha=_EXPAND_ALPHA.value)
  except (ValueError, FileNotFoundError, ImportError) as e:
    _fail(str(e))
  for i, path in enumerate(result.paths):
    print(f"query {path}")
    for r in range(result.ids.shape[1]):
      label = int(result.labels[i, r])
      print(f"  #{r + 1:<3d} id={int(result.ids[i, r]):<8d} d={float(result.distances[i, r]):<10.4g}"
            f" {result.class_names[label]}")
  if result.skipped:
    print(f"skipped {len(result.skipped)} unreadable file(s):")
    for line in result.skipped:
      print(f"  {line}")
  print(f"outputs in {out}:")
  for name, path in sorted(result.files.items()):
    print(f"  {name:6s} {path}")


def run() -> None:
  app.run(main, flags_parser=launch.flags_parser("search"))


if __name__ == "__main__":
  run()
