"""Pack CIFAR-10's JPEGs into one binary file + one index that travel with a device command.

  python bin/pack_dataset.py --out=runs/gpu_carry/cifar10_packed \
      --travel_with=runs/gpu_carry/wheels

Reads --manual_dir (default ../shared/datasets/cifar10: train_jpeg/, 50,000 images, and
test_batch_jpeg/ + test_batch_index.csv, 10,000) exactly as the cifar10_local tfds builder does
(same files, labels, ids) and writes --out/images.bin and --out/index.npz atomically
(`cbir_jax.data.packed`; data set name "cifar10_packed", read with no tensorflow or tfds).

The size check comes first: what travels beside the packed files (the repository's files that a
device call sends, i.e. git's tracked and untracked-but-not-ignored files, plus every
--travel_with path) is counted before any image is read, and the packed files plus that total
must fit --budget_mib (64: the device call's limit); over it, nothing is written and the
launcher exits 2 naming the sizes. Prints the sizes and the total.
"""

import os
import subprocess

from absl import app, flags

from cbir_jax._bin import launch

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "CIFAR-10 JPEG folder (train_jpeg/, "
                                  "test_batch_jpeg/); default ../shared/datasets/cifar10.")
_OUT = flags.DEFINE_string("out", None, "Output folder for images.bin and index.npz.")
_SPLITS = flags.DEFINE_list("splits", ["train", "test"], "Splits to pack.")
_BUDGET_MIB = flags.DEFINE_float("budget_mib", 64.0, "Limit in MiB for the packed files plus "
                                 "the repository plus --travel_with.")
_TRAVEL_WITH = flags.DEFINE_list("travel_with", [], "Other files or folders that travel with "
                                 "the packed data (e.g. carried wheels); counted in the budget.")
_COUNT_REPO = flags.DEFINE_bool("count_repo", True, "Count the repository's travelling files "
                                "(git ls-files --cached --others --exclude-standard).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Check and size everything; write nothing.")
flags.mark_flags_as_required(["out"])


def _fail(message: str) -> None:
  launch.fail("pack_dataset", message)


def _path_bytes(path: str, skip: str) -> int:
  """Bytes of a file, or of every file under a folder (except under `skip`)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  total = 0
  for folder, _, names in os.walk(path):
    if os.path.abspath(folder).startswith(skip):
      continue
    total += sum(os.path.getsize(os.path.join(folder, n)) for n in names
                 if os.path.isfile(os.path.join(folder, n)))
  return total


def _repo_bytes() -> int:
  """Bytes of the files a device call sends from this checkout (tracked + untracked, not
  ignored; deleted tracked files skipped)."""
  listing = subprocess.run(["git", "-C", _REPO, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], check=True, capture_output=True).stdout
  paths = {os.path.join(_REPO, p) for p in listing.decode().split("\0") if p}
  return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if _BUDGET_MIB.value <= 0:
    _fail(f"--budget_mib must be > 0, got {_BUDGET_MIB.value}")
  from cbir_jax import config_util  # pylint: disable=g-import-not-at-top
  from cbir_jax.data import packed  # pylint: disable=g-import-not-at-top
  from cbir_jax.data.builders import cifar10_local  # pylint: disable=g-import-not-at-top

  out = os.path.abspath(_OUT.value)
  manual_dir = _MANUAL_DIR.value or config_util.shared_dataset("cifar10")
  if not manual_dir or not os.path.isdir(manual_dir):
    _fail(f"--manual_dir {manual_dir or '(../shared/datasets/cifar10 absent)'!r} is not a folder")
  budget = int(_BUDGET_MIB.value * packed.MIB)
  # First the size of everything else that travels: over budget before reading any image.
  sizes = {}
  if _COUNT_REPO.value:
    try:
      sizes["repository"] = _repo_bytes()
    except (OSError, subprocess.CalledProcessError) as e:
      _fail(f"cannot list the repository's files with git ({launch.one_line(e)}); pass "
            "--nocount_repo and the repository's size through --travel_with")
  for path in _TRAVEL_WITH.value:
    if not os.path.exists(path):
      _fail(f"--travel_with path {path!r} does not exist")
    sizes[path] = _path_bytes(path, out)
  other = sum(sizes.values())
  if other >= budget:
    listed = ", ".join(f"{k} {v / packed.MIB:.2f} MiB" for k, v in sizes.items())
    _fail(f"what travels beside the data ({listed}"
          f") already fills the {_BUDGET_MIB.value} MiB budget")
  try:
    examples = packed.collect_cifar10(manual_dir, _SPLITS.value)
    summary = packed.pack(examples, out, class_names=cifar10_local.CLASS_NAMES,
                          split_names=_SPLITS.value, budget_bytes=budget, other_bytes=other,
                          dry_run=_DRY_RUN.value)
  except (ValueError, FileNotFoundError) as e:
    _fail(launch.one_line(e))
  mib = packed.MIB
  print(f"{'would pack' if _DRY_RUN.value else 'packed'} "
        f"{', '.join(f'{n} {s}' for s, n in summary.counts.items())} images "
        f"({summary.source_bytes / mib:.2f} MiB of encoded files, {summary.headers} shared "
        f"header(s)) into {summary.folder}:")
  print(f"  {packed.DATA_FILE} {summary.data_bytes / mib:.2f} MiB, {packed.INDEX_FILE} "
        f"{summary.index_bytes / mib:.2f} MiB")
  for name, size in sizes.items():
    print(f"  + {name} {size / mib:.2f} MiB")
  print(f"  total {summary.total_bytes / mib:.2f} MiB of the {_BUDGET_MIB.value:g} MiB budget")


if __name__ == "__main__":
  app.run(main, flags_parser=launch.flags_parser("pack_dataset"))
