"""What every launcher in bin/ shares: one-line errors with exit 2, flag parsing, output folders.

Imported by the launchers as `cbir_jax._bin.launch` (bin/ is packaged under that name); nothing
in the library imports it.
"""

import os
import platform
import sys
from typing import Callable, NoReturn

from absl import flags
import numpy as np


# glibc tunable that backs malloc'd memory with transparent huge pages (THP in "madvise" mode).
MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"
# Set to 0 to keep the environment as it is (no re-execution).
MALLOC_TUNING_ENV = "CBIR_JAX_MALLOC_TUNING"
# Set by ensure_malloc_tuning in the re-executed process: never re-execute twice.
_REEXEC_GUARD = "_CBIR_JAX_MALLOC_TUNING_REEXEC"


def _glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the running glibc, or None off glibc (musl, macOS, Windows)."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
  except (AttributeError, ValueError, OSError):
    name, version = platform.libc_ver()
  if name != "glibc" or not version:
    return None
  try:
    major, minor = (int(v) for v in version.split(".")[:2])
  except ValueError:
    return None
  return major, minor


def malloc_tuned_env(environ: dict[str, str] | None = None) -> dict[str, str] | None:
  """A copy of `environ` (default os.environ) with glibc.malloc.hugetlb=1 appended to
  GLIBC_TUNABLES, or None when nothing is to change: not glibc >= 2.35, the tunable already set
  (to any value), the opt-out CBIR_JAX_MALLOC_TUNING=0, or already re-executed once."""
  environ = dict(os.environ if environ is None else environ)
  if environ.get(MALLOC_TUNING_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return None
  if environ.get(_REEXEC_GUARD):
    return None
  version = _glibc_version()
  if version is None or version < (2, 35):
    return None
  tunables = environ.get("GLIBC_TUNABLES", "")
  if any(t.split("=", 1)[0] == "glibc.malloc.hugetlb" for t in tunables.split(":")):
    return None
  environ["GLIBC_TUNABLES"] = f"{tunables}:{MALLOC_TUNABLE}" if tunables else MALLOC_TUNABLE
  environ[_REEXEC_GUARD] = "1"
  return environ


def ensure_malloc_tuning() -> None:
  """Re-executes this process with GLIBC_TUNABLES=...:glibc.malloc.hugetlb=1 unless it has it.

  XLA:CPU takes its large buffers (activations, a 127M-weight gradient) from glibc malloc, which
  mmaps and unmaps each one every step; with 4 KiB pages the page faults dominate (LeNet-L's SGD
  update: 746 ms -> 107 ms with the tunable). glibc reads tunables only at process start, hence
  the re-execution: the same interpreter with the original command line (`sys.orig_argv`, so
  `python bin/x.py`, `python -m pkg.mod` and console scripts all come back as they were). Does
  nothing off Linux/glibc >= 2.35, when the tunable is already there, or with
  CBIR_JAX_MALLOC_TUNING=0. Call it first in a launcher's run(), before any output or threads.
  """
  env = malloc_tuned_env()
  if env is None:
    return
  argv = list(getattr(sys, "orig_argv", []))
  if not argv or not sys.executable or sys.flags.interactive or sys.argv[:1] in ([], [""], ["-"]):
    return  # An interactive session or stdin script cannot be re-run.
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (AttributeError, OSError, ValueError):
      pass
  try:
    os.execve(sys.executable, [sys.executable] + argv[1:], env)
  except OSError:
    return  # Run untuned rather than not at all.


def fail(prog: str, message: str) -> NoReturn:
  """Prints `<prog>: <message>` on stderr and exits with status 2."""
  print(f"{prog}: {message}", file=sys.stderr)
  sys.exit(2)


def one_line(error: BaseException) -> str:
  """An exception's message on one line: its first and last lines (config_flags embeds whole
  tracebacks in its messages; the first names the flag, the last the cause)."""
  message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if len(lines) > 2:
    lines = [lines[0], lines[-1]]
  return " ".join(lines).replace("Error whilst parsing config file: Traceback "
                                 "(most recent call last):", "cannot build the config:")


def flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
  """An `app.run(..., flags_parser=)` that turns a bad flag, a broken config file or a typo'd
  --config.<field> (ml_collections raises inside the parser) into one line and exit status 2."""
  def parse(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      fail(prog, f"{one_line(e)} (see --help)")
    except Exception as e:  # pylint: disable=broad-except
      fail(prog, f"bad --config: {one_line(e)}")
  return parse


def output_dir(prog: str, flag: str, path: str) -> str:
  """Creates the folder named by --`flag` and checks it is writable; returns its absolute path."""
  path = os.path.abspath(path)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    fail(prog, f"cannot create --{flag} {path}: {e.strerror}")
  if not os.access(path, os.W_OK | os.X_OK):
    fail(prog, f"--{flag} {path} is not writable")
  return path


def load_npy(prog: str, flag: str, path: str, mmap: bool = False, *,
             what: str | None = None) -> np.ndarray:
  """np.load of the .npy named by --`flag`; a missing, empty or corrupt file is one clear line,
  naming the file as `what` (default "--flag=path")."""
  what = what or f"--{flag}={path}"
  if not os.path.isfile(path):
    fail(prog, f"{what} does not exist")
  try:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    fail(prog, f"{what} is not a readable .npy file: {e or 'empty file'}")


def define_model_override_flags():
  """--train_workdir, --weights, --weights_format of the launchers that search an index by image
  (cbir-search, cbir-serve): another model than the one the index records. Returns the three
  flag holders."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  return (
      flags.DEFINE_string(
          "train_workdir", None, "Use the model of this training run instead of the one the "
          "index records (e.g. a run folder that moved); single-network indexes only."),
      flags.DEFINE_string(
          "weights", None, "Use these imported weights (.pth, .safetensors, .h5) instead of the "
          "model the index records; single-network indexes only."),
      flags.DEFINE_enum("weights_format", None, ["torch", "safetensors", "keras"],
                        "Format of --weights when its extension does not say."))
