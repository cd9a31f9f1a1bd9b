"""Exact flat indexes: FloatIndex (squared L2) and BinaryIndex (Hamming) over user int64 ids."""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax.index import storage
from cbir_jax.kernels import bits as bits_lib
from cbir_jax.kernels import euclidean, hamming
from cbir_jax.kernels import half as half_lib
from cbir_jax.kernels import topk as topk_lib


def _first_bad_rows(mask: np.ndarray, limit: int = 5) -> list[int]:
  return np.flatnonzero(mask)[:limit].tolist()


def unit_rows(x: np.ndarray) -> np.ndarray:
  """float32 rows of `x` scaled to unit L2 norm (norms in float64); a zero row stays zero."""
  norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]
  return np.ascontiguousarray(x / np.where(norm > 0, norm, 1.0), np.float32)


def _check_ids(ids: Any, m: int) -> np.ndarray:
  if ids is None:
    return None
  arr = np.asarray(ids)
  if arr.ndim != 1 or arr.shape[0] != m:
    raise ValueError(f"ids must have shape ({m},) to match the vectors, got {arr.shape}")
  if arr.size and not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"ids must be integers (stored as int64), got dtype {arr.dtype}")
  if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
    raise ValueError(f"ids must fit int64, got {arr.max()}")
  return arr.astype(np.int64)


class _FlatIndex:
  """Shared storage, ids, metadata and persistence of the flat indexes."""

  _kind = ""

  def __init__(self, chunk_size: int | None, metadata: dict[str, Any] | None):
    if metadata is not None and not isinstance(metadata, dict):
      raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    self.chunk_size = chunk_size
    self.metadata: dict[str, Any] = dict(metadata or {})
    self._parts: list[np.ndarray] = []
    self._id_parts: list[np.ndarray] = []
    self._data: np.ndarray | None = None
    self._ids: np.ndarray | None = None
    self._device: jax.Array | None = None

  def _empty(self) -> np.ndarray:
    raise NotImplementedError

  def _consolidate(self) -> None:
    if self._data is None:
      self._data = np.concatenate(self._parts) if self._parts else self._empty()
      self._ids = (np.concatenate(self._id_parts) if self._id_parts
                   else np.zeros((0,), np.int64))
      self._parts, self._id_parts = [self._data], [self._ids]
      self._device = None

  def __len__(self) -> int:
    return sum(p.shape[0] for p in self._parts)

  @property
  def ids(self) -> np.ndarray:
    """(n,) int64 user ids, in insertion order (a copy)."""
    self._consolidate()
    return self._ids.copy()

  def _append(self, rows: np.ndarray, ids: Any) -> None:
    m = rows.shape[0]
    ids = _check_ids(ids, m)
    if ids is None:
      ids = np.arange(len(self), len(self) + m, dtype=np.int64)
    self._parts.append(rows)
    self._id_parts.append(ids)
    self._data = self._ids = self._device = None

  def _prepare_search(self, k: int) -> Any:
    topk_lib.check_k(k, len(self))
    self._consolidate()
    if self._device is None:
      self._device = self._to_device(self._data)
    return self._device

  def _to_device(self, data: np.ndarray) -> Any:
    return jnp.asarray(data)

  def _params(self) -> dict[str, Any]:
    raise NotImplementedError

  def save(self, path: str | os.PathLike) -> None:
    """Writes the index to `path` atomically (format: see cbir_jax.index.storage)."""
    self._consolidate()
    storage.save(path, self._kind, self._params(), {"data": self._data, "ids": self._ids},
                 self.metadata)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "_FlatIndex":
    """Reads an index saved by `save`; ValueError for a file of another index kind."""
    return cls._from_stored(path, *storage.load(path))

  @classmethod
  def _from_stored(cls, path, kind, params, arrays, metadata) -> "_FlatIndex":
    if kind != cls._kind:
      raise ValueError(f"{os.fspath(path)!r} holds a {kind}, not a {cls._kind}")
    index = cls(**params, metadata=metadata)
    index.add(arrays["data"], ids=arrays["ids"])
    return index


STORAGES = ("float32", "bfloat16")


class FloatIndex(_FlatIndex):
  """Exact squared-L2 index over float32 vectors (like FAISS IndexFlatL2 + IndexIDMap).

  Args:
    dim: vector dimension, >= 1.
    chunk_size: passed to `euclidean_topk` (database rows per step; None = automatic).
    storage: "float32" (default) or "bfloat16": the search also keeps a bfloat16 copy of the
      vectors and, for up to kernels.ffi.GEMV_MAX_Q queries per call on CPU with the native
      extension, scans that copy (half the bytes) and re-scores in float32 every vector a proven
      error bound cannot exclude (`kernels.half`), so results are identical to "float32"'s, bit
      for bit. Memory: 1.5x the float32 vectors. Saved with the index (its `params`); the file
      holds the float32 vectors either way.
    normalize: if True, a cosine index: `add` stores every vector L2-normalised and `search`
      normalises the queries, so the ranking is by cosine similarity and the distances are
      squared L2 between unit vectors, 2 - 2 cos (a zero vector stays zero; like FAISS's
      normalize_L2 + IndexFlat). Saved with the index. Database-side augmentation writes one
      (`cbir_jax.jobs.augment_index`).
    metadata: JSON-serialisable dict saved with the index (model, endpoint, ...).
  """

  _kind = "FloatIndex"

  def __init__(self, dim: int, *, chunk_size: int | None = None, storage: str = "float32",
               normalize: bool = False, metadata: dict[str, Any] | None = None):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
      raise ValueError(f"dim must be a positive int, got {dim!r}")
    if storage not in STORAGES:
      raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if not isinstance(normalize, (bool, np.bool_)):
      raise ValueError(f"normalize must be True or False, got {normalize!r}")
    self.dim = int(dim)
    self.storage = storage
    self.normalize = bool(normalize)
    super().__init__(chunk_size, metadata)

  def _to_device(self, data: np.ndarray) -> Any:
    if self.storage == "bfloat16":
      return half_lib.HalfDatabase.build(data)
    return jnp.asarray(data)

  def _empty(self) -> np.ndarray:
    return np.zeros((0, self.dim), np.float32)

  def _params(self) -> dict[str, Any]:
    params = {"dim": self.dim, "chunk_size": self.chunk_size}
    # Non-default options only, so files of the defaults are read by older versions too.
    if self.storage != "float32":
      params["storage"] = self.storage
    if self.normalize:
      params["normalize"] = True
    return params

  def _check(self, x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != self.dim:
      raise ValueError(f"{name} must have shape (m, {self.dim}), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
      raise TypeError(f"{name} must be float (stored as float32), got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
      raise ValueError(f"{name} has NaN/inf (or values beyond float32) in {int(bad.sum())} rows, "
                       f"first rows {_first_bad_rows(bad)}")
    if self.normalize:
      return unit_rows(arr)
    return arr

  def add(self, x: Any, ids: Any = None) -> None:
    """Adds vectors x (m, dim) float (finite) with optional ids (m,) int (default: positions)."""
    self._append(self._check(x, "x"), ids)

  @property
  def vectors(self) -> np.ndarray:
    """(n, dim) float32 stored vectors (a copy)."""
    self._consolidate()
    return self._data.copy()

  def unit_vectors(self) -> np.ndarray:
    """(n, dim) float32 stored vectors of a cosine index (`normalize=True`), not copied: read
    them, never write them."""
    if not self.normalize:
      raise ValueError("unit_vectors is a cosine index's (FloatIndex(normalize=True)); this "
                       "index stores its vectors as added")
    self._consolidate()
    view = self._data.view()
    view.flags.writeable = False
    return view

  def search(self, q: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest stored vectors of each query.

    Args:
      q: (nq, dim) float, finite (L2-normalised first when the index `normalize`s).
      k: 1 <= k <= len(self), else ValueError naming k and n.

    Returns:
      (D (nq, k) float32 squared L2 ascending, I (nq, k) int64 user ids), FAISS order; equal
      distances rank the earlier-added vector first.
    """
    queries = self._check(q, "q")
    db = self._prepare_search(k)
    if self.storage == "bfloat16":
      d, i = half_lib.half_topk(queries, db, k, chunk_size=self.chunk_size)
    else:
      d, i = euclidean.euclidean_topk(queries, db, k, chunk_size=self.chunk_size)
    return np.asarray(d), self._ids[np.asarray(i)]


class BinaryIndex(_FlatIndex):
  """Exact Hamming index over packed uint32 codes (like FAISS IndexBinaryFlat + IndexIDMap).

  Args:
    nbits: code length in bits, >= 1; codes are (m, ceil(nbits / 32)) uint32 from
      kernels.bits.pack_bits (bit j in word j // 32 at position j % 32, padding bits 0).
    chunk_size: passed to `hamming_topk`. method: "auto" (default: the native kernel on CPU where
      built, else "popcount"), "popcount" or "gemm" (same results).
    metadata: JSON-serialisable dict saved with the index (e.g. the hashing thresholds).
  """

  _kind = "BinaryIndex"

  def __init__(self, nbits: int, *, chunk_size: int | None = None,
               method: str = hamming.DEFAULT_METHOD, metadata: dict[str, Any] | None = None):
    if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or nbits < 1:
      raise ValueError(f"nbits must be a positive int, got {nbits!r}")
    self.nbits = int(nbits)
    self.words = bits_lib.num_words(self.nbits)
    self.method = hamming.check_method(method)
    super().__init__(chunk_size, metadata)

  def _empty(self) -> np.ndarray:
    return np.zeros((0, self.words), np.uint32)

  def _params(self) -> dict[str, Any]:
    return {"nbits": self.nbits, "chunk_size": self.chunk_size, "method": self.method}

  def _check(self, codes: Any, name: str) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype != np.uint32:
      raise TypeError(f"{name} must be uint32 words from pack_bits, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != self.words:
      raise ValueError(f"{name} must have shape (m, {self.words}) for nbits={self.nbits}, got "
                       f"{arr.shape}")
    rem = self.nbits % 32
    if rem:
      bad = (arr[:, -1] >> np.uint32(rem)) != 0
      if bad.any():
        raise ValueError(f"{name} has bits set beyond nbits={self.nbits} in {int(bad.sum())} "
                         f"rows, first rows {_first_bad_rows(bad)}")
    return np.ascontiguousarray(arr)

  def add(self, codes: Any, ids: Any = None) -> None:
    """Adds codes (m, ceil(nbits / 32)) uint32 with optional ids (m,) int."""
    self._append(self._check(codes, "codes"), ids)

  @property
  def codes(self) -> np.ndarray:
    """(n, ceil(nbits / 32)) uint32 stored codes (a copy)."""
    self._consolidate()
    return self._data.copy()

  def search(self, q: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest stored codes of each query code.

    Args:
      q: (nq, ceil(nbits / 32)) uint32. k: 1 <= k <= len(self), else ValueError naming k and n.

    Returns:
      (D (nq, k) int32 Hamming ascending, I (nq, k) int64 user ids), FAISS order; equal
      distances rank the earlier-added code first.
    """
    queries = self._check(q, "q")
    db = self._prepare_search(k)
    d, i = hamming.hamming_topk(queries, db, k, chunk_size=self.chunk_size,
                                method=self.method)
    return np.asarray(d), self._ids[np.asarray(i)]


def load_index(path: str | os.PathLike) -> FloatIndex | BinaryIndex:
  """Loads whichever index kind `path` holds."""
  stored = storage.load(path)
  cls = {"FloatIndex": FloatIndex, "BinaryIndex": BinaryIndex}.get(stored[0])
  if cls is None:
    raise ValueError(f"{os.fspath(path)!r} holds an unknown index kind {stored[0]!r}")
  return cls._from_stored(path, *stored)  # pylint: disable=protected-access
