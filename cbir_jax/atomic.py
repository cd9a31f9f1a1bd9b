"""Atomic file writes: a temporary file in the target's folder, fsync, then os.replace.

A reader (or a crash) never sees a half-written file: the target is either the previous complete
file or the new complete one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
  """Yields a file object whose content replaces `path` only when the block ends without error.

  Args:
    path: the destination; its folder is created if missing.
    mode: "w" (text, UTF-8) or "wb" (bytes).
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
  try:
    with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Replaces `path` atomically with `text`."""
  with atomic_write(path, "w") as f:
    f.write(text)


def _builtin(value: Any) -> Any:
  """JSON fallback for NumPy values: arrays become lists, scalars Python numbers."""
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, payload: Any) -> None:
  """Replaces `path` atomically with `payload` as indented, key-sorted JSON (NumPy allowed)."""
  write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=_builtin))
