"""What every launcher in bin/ shares: one-line errors with exit 2, flag parsing, output folders.

Imported by the launchers as `cbir_jax._bin.launch` (bin/ is packaged under that name); nothing
in the library imports it.
"""

import os
import sys
from typing import Callable, NoReturn

from absl import flags
import numpy as np


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


def load_npy(prog: str, flag: str, path: str, mmap: bool = False) -> np.ndarray:
  """np.load of the .npy named by --`flag`; a missing, empty or corrupt file is one clear line."""
  if not os.path.isfile(path):
    fail(prog, f"--{flag}={path} does not exist")
  try:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    fail(prog, f"--{flag}={path} is not a readable .npy file: {e or 'empty file'}")
