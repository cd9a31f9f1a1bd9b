"""Index file format: magic, version, JSON header, raw arrays, SHA-256; atomic writes."""

import hashlib
import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

MAGIC = b"CBIRIDX\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length
_DIGEST_BYTES = 32
_DTYPES = ("float32", "uint32", "int64")


def _jsonable(value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def save(path: str | os.PathLike, kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray],
         metadata: dict[str, Any]) -> None:
  """Writes an index file atomically (temp file in the same folder, fsync, os.replace).

  Args:
    path: destination; its folder must exist.
    kind: index class name, checked on load.
    params: constructor parameters (JSON values).
    arrays: name -> C-contiguous array of dtype float32, uint32 or int64.
    metadata: JSON-serialisable dict (NumPy arrays and scalars become lists / numbers).
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"folder {folder!r} for index file {path!r} does not exist")
  entries, offset = [], 0
  for name, arr in arrays.items():
    if arr.dtype.name not in _DTYPES:
      raise TypeError(f"array {name!r} has dtype {arr.dtype}, expected one of {_DTYPES}")
    entries.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape),
                    "offset": offset, "nbytes": int(arr.nbytes)})
    offset += int(arr.nbytes)
  try:
    header = json.dumps({"kind": kind, "params": params, "arrays": entries,
                         "metadata": metadata}, default=_jsonable).encode("utf-8")
  except (TypeError, ValueError) as e:
    raise ValueError(f"index metadata must be JSON-serialisable: {e}") from e
  digest = hashlib.sha256()
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".cbiridx", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      for chunk in [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header] + [
          memoryview(np.ascontiguousarray(a).view(np.uint8).reshape(-1)) for a in arrays.values()]:
        digest.update(chunk)
        f.write(chunk)
      f.write(digest.digest())
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load(path: str | os.PathLike) -> tuple[str, dict[str, Any], dict[str, np.ndarray],
                                           dict[str, Any]]:
  """Reads and verifies an index file -> (kind, params, arrays, metadata).

  Raises FileNotFoundError for a missing file and ValueError naming the problem for an empty,
  foreign, newer-version, truncated or corrupted (checksum mismatch) file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"index file {path!r} does not exist")
  with open(path, "rb") as f:
    blob = f.read()
  if not blob:
    raise ValueError(f"index file {path!r} is empty (0 bytes)")
  if len(blob) < _PREFIX.size or blob[:8] != MAGIC:
    raise ValueError(f"{path!r} is not a cbir_jax index file (magic {blob[:8]!r}, expected "
                     f"{MAGIC!r})")
  _, version, header_len = _PREFIX.unpack_from(blob)
  if version != FORMAT_VERSION:
    raise ValueError(f"index file {path!r} has format version {version}; this cbir_jax reads "
                     f"version {FORMAT_VERSION}")
  header_end = _PREFIX.size + header_len
  if len(blob) < header_end + _DIGEST_BYTES:
    raise ValueError(f"index file {path!r} is truncated ({len(blob)} bytes, header alone needs "
                     f"{header_end + _DIGEST_BYTES})")
  try:
    header = json.loads(blob[_PREFIX.size:header_end].decode("utf-8"))
    payload = sum(int(e["nbytes"]) for e in header["arrays"])
  except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"index file {path!r} has a corrupt header: {e}") from e
  expected = header_end + payload + _DIGEST_BYTES
  if len(blob) != expected:
    state = "truncated" if len(blob) < expected else "longer than its header says"
    raise ValueError(f"index file {path!r} is {state}: {len(blob)} bytes, expected {expected}")
  if hashlib.sha256(blob[:-_DIGEST_BYTES]).digest() != blob[-_DIGEST_BYTES:]:
    raise ValueError(f"index file {path!r} is corrupt: SHA-256 checksum mismatch")
  arrays = {}
  for e in header["arrays"]:
    if e["dtype"] not in _DTYPES:
      raise ValueError(f"index file {path!r} holds array {e['name']!r} of dtype {e['dtype']}")
    start = header_end + int(e["offset"])
    raw = np.frombuffer(blob, np.uint8, count=int(e["nbytes"]), offset=start)
    arrays[e["name"]] = raw.view(e["dtype"]).reshape(e["shape"]).copy()
  return header["kind"], header["params"], arrays, header["metadata"]
