"""Select b feature dimensions (information gain rate) and hash them to packed binary codes.

  python bin/extract.py --workdir=runs/digits --split=train --endpoint=f6 --out=runs/f/db.npy
  python bin/extract.py --workdir=runs/digits --split=test --endpoint=f6 --out=runs/f/q.npy
  python bin/hash.py --database=runs/f/db.npy --queries=runs/f/q.npy --bits=64 \
      --out_dir=runs/f/hash64

Seed paper 002: the dimensions are ranked by information gain rate on the database features and
labels only (`cbir_jax.features.igr`), the top --bits are kept, and each is binarised at the
database mean (`MeanThresholdHasher`, --threshold=dimension) or the vector's own mean
(--threshold=vector). The same selection and thresholds are applied unchanged to the queries.
--selection=random (seeded) or first keep other dimension sets, for comparisons.

Writes to --out_dir: <stem>_codes.npy (uint32[n, ceil(bits/32)], bit j in word j // 32 at
position j % 32) for the database and every query file, each with the sidecars of its features
(.json with the provenance record, now holding the fitted encoder; .labels.npy; .ids.npy), and
encoder.json (`HashEncoder.state()`), each atomically (`cbir_jax.jobs.hash_feature_files`).
`cbir-index build --features=<out_dir>/<db stem>_codes.npy` then makes a Hamming index that
`cbir-search --query=photo.jpg` can search by image.
"""

from absl import app, flags

from cbir_jax._bin import launch

_DATABASE = flags.DEFINE_string("database", None, "Database features .npy (from bin/extract.py); "
                                "labels from its .labels.npy sidecar or --database_labels.")
_DATABASE_LABELS = flags.DEFINE_string("database_labels", None, "int labels .npy (n,), when the "
                                       "features have no .labels.npy sidecar.")
_QUERIES = flags.DEFINE_list("queries", [], "Query feature .npy files to encode with the fitted "
                             "selection and thresholds (comma separated).")
_BITS = flags.DEFINE_integer("bits", 64, "Number of selected dimensions = code bits b, in "
                             "[1, d]; -1 = all d dimensions.")
_SELECTION = flags.DEFINE_enum("selection", "igr", ["igr", "random", "first"], "Which b "
                               "dimensions: top information gain rate, random (--seed), or first.")
_IGR_BINS = flags.DEFINE_integer("igr_bins", 2, "IGR partition: 2 = split at the database mean "
                                 "(the hash threshold), m > 2 = m equal-frequency bins.")
_THRESHOLD = flags.DEFINE_enum("threshold", "dimension", ["dimension", "vector"], "Hash "
                               "threshold: database mean per dimension, or each vector's mean.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of --selection=random.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (created).")
flags.mark_flags_as_required(["database", "out_dir"])


def _fail(message: str) -> None:
  launch.fail("hash", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if _IGR_BINS.value < 2:
    _fail(f"--igr_bins must be >= 2, got {_IGR_BINS.value}")
  for flag, path in [("database", _DATABASE.value)] + [("queries", q) for q in _QUERIES.value]:
    launch.load_npy("hash", flag, path, mmap=True)  # Exists and is a readable .npy.
  out_dir = launch.output_dir("hash", "out_dir", _OUT_DIR.value)

  from cbir_jax import jobs  # pylint: disable=g-import-not-at-top  (keeps --help fast)
  from cbir_jax.features import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  try:
    encoder = encoder_lib.HashEncoder(_BITS.value, selection=_SELECTION.value,
                                      igr_bins=_IGR_BINS.value, threshold=_THRESHOLD.value,
                                      seed=_SEED.value)
    written = jobs.hash_feature_files(_DATABASE.value, _QUERIES.value, out_dir, encoder,
                                      database_labels=_DATABASE_LABELS.value)
  except (ValueError, TypeError, FileNotFoundError) as e:
    _fail(str(e))
  print(f"hashed {_DATABASE.value} ({encoder.dim}-d, {_SELECTION.value} top {encoder.bits}, "
        f"threshold={_THRESHOLD.value}) and {len(_QUERIES.value)} query file(s) into "
        f"{encoder.bits}-bit codes")
  for path in written.values():
    print(f"  {path}")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
