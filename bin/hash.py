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
position j % 32) for the database and every query file, hash_state.npz (selection order, rates,
b, hasher threshold/theta/nbits) and hash.json (settings, inputs, shapes), each atomically.
"""

import json
import os

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


def _stem(path: str) -> str:
  return os.path.basename(path)[:-len(".npy")]


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  for flag, path in [("--database", _DATABASE.value)] + [("--queries", q) for q in _QUERIES.value]:
    if not path.endswith(".npy"):
      _fail(f"{flag} files must end in .npy, got {path!r}")
    if not os.path.isfile(path):
      _fail(f"{flag} file {path} does not exist")
  stems = [_stem(p) for p in [_DATABASE.value] + _QUERIES.value]
  if len(set(stems)) != len(stems):
    _fail(f"--database and --queries file names must differ (outputs are named after them), "
          f"got {stems}")
  if _IGR_BINS.value < 2:
    _fail(f"--igr_bins must be >= 2, got {_IGR_BINS.value}")
  out_dir = launch.output_dir("hash", "out_dir", _OUT_DIR.value)

  # Imported after flag checks: keeps --help and flag errors fast.
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cbir_jax.features import extract as extract_lib  # pylint: disable=g-import-not-at-top
  from cbir_jax import atomic  # pylint: disable=g-import-not-at-top
  from cbir_jax.features import hashing, igr  # pylint: disable=g-import-not-at-top

  db = launch.load_npy("hash", "database", _DATABASE.value, mmap=True)
  if db.ndim != 2:
    _fail(f"--database features must be 2-D (n, d), got shape {db.shape}")
  n, d = db.shape
  labels_path = _DATABASE_LABELS.value or extract_lib.sidecar_paths(_DATABASE.value)["labels"]
  if not os.path.isfile(labels_path):
    _fail(f"no database labels: {labels_path} does not exist (set --database_labels)")
  labels = launch.load_npy("hash", "database_labels", labels_path)
  if labels.shape != (n,):
    _fail(f"database labels {labels_path} have shape {labels.shape}, expected ({n},)")
  bits = d if _BITS.value == -1 else _BITS.value
  if not 1 <= bits <= d:
    _fail(f"--bits must be in [1, {d}] (the feature dimension) or -1, got {_BITS.value}")
  queries = {}
  for path in _QUERIES.value:
    q = launch.load_npy("hash", "queries", path, mmap=True)
    if q.ndim != 2 or q.shape[1] != d:
      _fail(f"--queries file {path} must have shape (m, {d}), got {q.shape}")
    queries[_stem(path)] = q

  try:
    rates = np.zeros((0,), np.float64)
    if _SELECTION.value == "igr":
      rates = igr.information_gain_rate(db, labels, bins=_IGR_BINS.value)
      order = igr.order_by_rate(rates)
    elif _SELECTION.value == "random":
      order = np.random.default_rng(_SEED.value).permutation(d).astype(np.int64)
    else:
      order = np.arange(d, dtype=np.int64)
    hasher = hashing.MeanThresholdHasher(_THRESHOLD.value).fit(igr.select(db, order, bits))
    codes = {_stem(_DATABASE.value): hasher.transform(igr.select(db, order, bits))}
    for stem, q in queries.items():
      codes[stem] = hasher.transform(igr.select(q, order, bits))
  except (ValueError, TypeError) as e:
    _fail(str(e))

  outputs = []
  for stem, c in codes.items():
    path = os.path.join(out_dir, f"{stem}_codes.npy")
    with atomic.atomic_write(path, "wb") as f:
      np.save(f, c)
    outputs.append(path)
  state = {"selection_order": order, "selection_b": np.asarray(bits, np.int64),
           "igr_rates": rates, "igr_bins": np.asarray(_IGR_BINS.value, np.int64)}
  state.update({f"hasher_{k}": v for k, v in hasher.state().items()})
  state_path = os.path.join(out_dir, "hash_state.npz")
  with atomic.atomic_write(state_path, "wb") as f:
    np.savez(f, **state)
  meta = {"database": os.path.abspath(_DATABASE.value), "database_labels":
          os.path.abspath(labels_path), "queries": [os.path.abspath(q) for q in _QUERIES.value],
          "bits": bits, "words": int(codes[stems[0]].shape[1]), "selection": _SELECTION.value,
          "igr_bins": _IGR_BINS.value, "threshold": _THRESHOLD.value, "seed": _SEED.value,
          "selected_dims": order[:bits].tolist(),
          "codes": {stem: list(c.shape) for stem, c in codes.items()}}
  json_path = extract_lib.sidecar_paths(_DATABASE.value)["json"]
  if os.path.isfile(json_path):
    with open(json_path) as f:
      meta["features_metadata"] = json.load(f)
  meta_path = os.path.join(out_dir, "hash.json")
  atomic.write_text(meta_path, json.dumps(meta, indent=2) + "\n")
  print(f"hashed {n} database vectors ({d}-d, {_SELECTION.value} top {bits}, threshold="
        f"{_THRESHOLD.value}) and {sum(len(q) for q in queries.values())} queries into "
        f"{bits}-bit codes")
  for path in outputs + [state_path, meta_path]:
    print(f"  {path}")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
