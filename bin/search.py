"""Query by image: rank an index's database for a photo (or a folder of photos) and draw it.

  python bin/search.py --index=runs/demo/float.index --query=my_photo.jpg --k=10 --out=runs/q
  python bin/search.py --index=runs/demo/binary.index --query=photos/ --k=5

The index must come from cbir-demo (or record the same provenance: the training workdir, the
feature endpoint, the data set, and for a hash index the IGR order and thresholds). Writes
contact_sheet.png (each query, then its ranked results with distance, class and id),
ranking.json and ranking.csv into --out, and prints the rankings.
"""

import os
import sys

from absl import app, flags, logging

_INDEX = flags.DEFINE_string("index", None, "Index file written by cbir-demo (float.index for "
                             "exact Euclidean, binary.index for Hamming over hashes).")
_QUERY = flags.DEFINE_string("query", None, "An image file, or a folder whose image files "
                             "(jpg, png, bmp, gif, tif, webp, ppm, pgm) are all used as queries.")
_K = flags.DEFINE_integer("k", 10, "Results per query, in [1, index size].")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <index folder>/search).")


def _fail(message: str) -> None:
  print(f"search: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if not _INDEX.value:
    _fail("--index is required")
  if not _QUERY.value:
    _fail("--query is required (an image file or a folder of images)")
  if not os.path.isfile(_INDEX.value):
    _fail(f"--index {_INDEX.value!r} is not a file")
  if not os.path.exists(_QUERY.value):
    _fail(f"--query {_QUERY.value!r} does not exist")
  if _K.value < 1:
    _fail(f"--k must be >= 1, got {_K.value}")
  out = os.path.abspath(_OUT.value or os.path.join(os.path.dirname(_INDEX.value), "search"))

  from cbir_jax import pipeline
  try:
    result = pipeline.search_images(_INDEX.value, _QUERY.value, _K.value, out)
  except (ValueError, FileNotFoundError) as e:
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
  app.run(main)


if __name__ == "__main__":
  run()
