"""What IGR selection and hashing buy on a trained run: mAP of full vs top-b vs hashed features.

  python bin/train.py --config=configs/digits.py --workdir=runs/digits
  python bin/compare.py --train_workdir=runs/digits --endpoint=lk --out=runs/digits/compare_lk
  python bin/compare.py --train_workdir=runs/digits --endpoint=f6 --bits=16,32,64,84 \
      --out=runs/digits/compare_f6
  python bin/compare.py --database_features=db.npy --query_features=q.npy --out=cmp  # no model

Restores the run in --train_workdir (`cbir_jax.train.trainer.restore`), extracts --endpoint of
--database_split and --query_split (`cbir_jax.features.extract`, saved under <out>/features/
unless --database_features/--query_features name saved .npy files with labels sidecars), runs
`cbir_jax.eval.selection.compare_selection` (full Euclidean, IGR / random top-b Euclidean,
IGR / PCA top-b hashed Hamming; everything fitted on the database side only) and writes
<out>/results.json, results.md and map_vs_bits.png (`cbir_jax.eval.selection_report`).
"""

import os
import shlex
import sys
import time

from absl import app, flags

from cbir_jax._bin import launch

_TRAIN_WORKDIR = flags.DEFINE_string("train_workdir", None, "Training run directory "
                                     "(config.json and checkpoints/ written by bin/train.py).")
_ENDPOINT = flags.DEFINE_string("endpoint", None, "Model endpoint, e.g. f6 or lk (LeNet-L), "
                                "fc8 (AlexNet), pool or dfs (DFS-Nets).")
_DATABASE_SPLIT = flags.DEFINE_string("database_split", "train", "Split indexed as the database "
                                      "(IGR, thresholds and PCA are fitted on it).")
_QUERY_SPLIT = flags.DEFINE_string("query_split", "test", "Split of held-out queries.")
_DATABASE_FEATURES = flags.DEFINE_string("database_features", None, "Saved database features "
                                         "(.npy with .labels.npy sidecar) instead of extracting.")
_QUERY_FEATURES = flags.DEFINE_string("query_features", None, "Saved query features (.npy with "
                                      ".labels.npy sidecar) instead of extracting.")
_BITS = flags.DEFINE_list("bits", ["16", "32", "64", "128", "256"], "b values: selected "
                          "dimensions = code bits; each in [1, d].")
_RANDOM_TRIALS = flags.DEFINE_integer("random_trials", 5, "Seeded random draws averaged for "
                                      "random top-b.")
_K = flags.DEFINE_integer("k", 0, "Ranking depth of `map`; 0 = the whole database.")
_PAPER_K = flags.DEFINE_integer("paper_k", 10, "Depth of seed 000's mAP(Top k).")
_QUERY_STRIDE = flags.DEFINE_integer("query_stride", 1, "Use every n-th query (1 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random draws.")
_THRESHOLD = flags.DEFINE_enum("threshold", "dimension", ["dimension", "vector"], "Hashing "
                               "threshold (cbir_jax.features.hashing).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")
_TITLE = flags.DEFINE_string("title", None, "Title of the table and figure; default "
                             "'<dataset> <model> <endpoint>'.")
_OUT = flags.DEFINE_string("out", None, "Output folder (results.json, results.md, "
                           "map_vs_bits.png, features/).")
flags.mark_flags_as_required(["out"])


def _fail(message: str) -> None:
  launch.fail("compare", message)


def _parse_bits(values: list[str]) -> list[int]:
  bits = []
  for value in values:
    try:
      b = int(value)
    except ValueError:
      b = 0
    if b < 1:
      _fail(f"--bits must be comma-separated ints >= 1, got {','.join(values)!r}")
    bits.append(b)
  if not bits:
    _fail("--bits must name at least one b")
  return sorted(set(bits))


def _check_flags() -> tuple[list[int], bool]:
  """Validates the flags before any work; returns (bits, use saved features)."""
  bits = _parse_bits(_BITS.value)
  saved = (_DATABASE_FEATURES.value, _QUERY_FEATURES.value)
  if any(saved) and not all(saved):
    _fail("--database_features and --query_features go together; give both or neither")
  use_saved = all(saved)
  for flag, path in (("database_features", saved[0]), ("query_features", saved[1])):
    if path and not path.endswith(".npy"):
      _fail(f"--{flag} must be a .npy file, got {path!r}")
    if path and not os.path.isfile(path):
      _fail(f"--{flag}={path} does not exist")
  if not use_saved:
    if not _TRAIN_WORKDIR.value:
      _fail("--train_workdir is required unless --database_features and --query_features "
            "are given")
    if not os.path.isfile(os.path.join(_TRAIN_WORKDIR.value, "config.json")):
      _fail(f"--train_workdir {_TRAIN_WORKDIR.value} has no config.json (not a bin/train.py "
            "run)")
    if not _ENDPOINT.value:
      _fail("--endpoint is required when extracting from --train_workdir")
    if _DATABASE_SPLIT.value == _QUERY_SPLIT.value:
      _fail(f"--database_split and --query_split must differ (held-out queries), both are "
            f"{_QUERY_SPLIT.value!r}")
  for flag, value, low in (("random_trials", _RANDOM_TRIALS.value, 1), ("k", _K.value, 0),
                           ("paper_k", _PAPER_K.value, 1),
                           ("query_stride", _QUERY_STRIDE.value, 1),
                           ("batch_size", _BATCH_SIZE.value, 1)):
    if value < low:
      _fail(f"--{flag} must be >= {low}, got {value}")
  if _K.value and _PAPER_K.value > _K.value:
    _fail(f"--paper_k must be <= --k, got {_PAPER_K.value} > {_K.value}")
  return bits, use_saved


def _extract(out: str) -> tuple[str, str, dict]:
  """Restores the run and extracts both splits into <out>/features/; returns paths and info."""
  from cbir_jax import jobs  # pylint: disable=g-import-not-at-top
  run = jobs.restore(_TRAIN_WORKDIR.value)
  paths = []
  for split in (_DATABASE_SPLIT.value, _QUERY_SPLIT.value):
    path = os.path.join(out, "features", f"{split}_{_ENDPOINT.value}.npy")
    jobs.extract_split(run, split, _ENDPOINT.value, path, batch_size=_BATCH_SIZE.value)
    paths.append(path)
  return paths[0], paths[1], {"model": run.config.model.name, "dataset": run.config.dataset.name}


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  bits, use_saved = _check_flags()
  out = launch.output_dir("compare", "out", _OUT.value)
  command = " ".join(shlex.quote(a) for a in ["python", "bin/compare.py", *sys.argv[1:]])

  # Imported after flag checks: keeps --help and flag errors fast.
  from cbir_jax import jobs  # pylint: disable=g-import-not-at-top
  from cbir_jax.eval import selection  # pylint: disable=g-import-not-at-top
  from cbir_jax.eval import selection_report  # pylint: disable=g-import-not-at-top
  start = time.time()
  try:
    if use_saved:
      db_path, q_path, info = _DATABASE_FEATURES.value, _QUERY_FEATURES.value, {}
    else:
      db_path, q_path, info = _extract(out)
    report = jobs.compare_feature_files(
        db_path, q_path, out, bits=bits, k=_K.value or None, paper_k=_PAPER_K.value,
        random_trials=_RANDOM_TRIALS.value, seed=_SEED.value, threshold=_THRESHOLD.value,
        query_stride=_QUERY_STRIDE.value, title=_TITLE.value, endpoint=_ENDPOINT.value,
        command=command, extract_seconds=time.time() - start, info=info)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  print(f"{report.title}: {report.description}")
  print(selection.format_table(report.rows, "map"))
  paper = selection_report.paper_metric(report.rows)
  if paper:
    print(f"\n{paper}:")
    print(selection.format_table(report.rows, paper))
  for path in report.paths.values():
    print(f"  {path}")


def run() -> None:
  app.run(main, flags_parser=launch.flags_parser("compare"))


if __name__ == "__main__":
  run()
