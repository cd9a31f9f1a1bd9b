"""Feature files -> hash codes -> indexes (plain or fused) -> searches of query files."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from cbir_jax import atomic
from cbir_jax.eval import protocol
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import fuse as fuse_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.index import BinaryIndex, FloatIndex, load_index
from cbir_jax.kernels import pack_bits
from cbir_jax.jobs.networks import index_metadata


# ----------------------------------------------------------------------------------- hashing


def _stem(path: str) -> str:
  return os.path.basename(path)[:-len(".npy")]


def hash_feature_files(database: str, queries: Sequence[str], out_dir: str,
                       encoder: encoder_lib.HashEncoder, *, database_labels: str | None = None
                       ) -> dict[str, str]:
  """Fits `encoder` on the database features (and labels) and encodes every file.

  Writes to `out_dir`, each atomically: `<stem>_codes.npy` (uint32[n, ceil(b/32)]) with the
  sidecars of its features (`.json` with the provenance record now holding the encoder state,
  `.labels.npy`, `.ids.npy`) for the database and every query file, and `encoder.json`
  (`HashEncoder.state()`, to encode more vectors later). Returns {name: path}.
  """
  files = [database, *queries]
  for path in files:
    if not path.endswith(".npy"):
      raise ValueError(f"feature files must end in .npy, got {path!r}")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"feature file {path} does not exist")
  stems = [_stem(p) for p in files]
  if len(set(stems)) != len(stems):
    raise ValueError(f"the database and query file names must differ (outputs are named after "
                     f"them), got {stems}")
  db = extract_lib.load_features(database, require_metadata=False)
  labels = db.labels
  if database_labels is not None:
    labels = np.load(database_labels)
  if encoder.selection == "igr" and labels is None:
    raise ValueError(f"no database labels: {extract_lib.sidecar_paths(database)['labels']} does "
                     "not exist (give the labels file)")
  if labels is not None and np.shape(labels) != (db.features.shape[0],):
    raise ValueError(f"database labels have shape {np.shape(labels)}, expected "
                     f"({db.features.shape[0]},)")
  encoder.fit(db.features, labels)
  state = encoder.state()
  os.makedirs(out_dir, exist_ok=True)
  written = {}
  for path in files:
    f = db if path == database else extract_lib.load_features(path, require_metadata=False)
    if f.features.ndim != 2 or f.features.shape[1] != encoder.dim:
      raise ValueError(f"{path} must have shape (m, {encoder.dim}), got {f.features.shape}")
    out = os.path.join(out_dir, f"{_stem(path)}_codes.npy")
    meta = dict(f.metadata)
    record = provenance_lib.from_metadata(meta)
    if record is not None:
      meta["provenance"] = record.with_encoder(state).to_dict()
    meta["encoder"] = {"source": os.path.abspath(path), "bits": encoder.bits,
                       "selection": encoder.selection, "threshold": encoder.threshold}
    for key in ("shape", "dtype", "preprocessing"):
      meta.pop(key, None)
    codes = encoder.encode(f.features)
    sidecars = extract_lib.sidecar_paths(out)
    for name, value, dtype in (("labels", f.labels if path != database else labels, np.int32),
                               ("ids", f.ids, np.int64)):
      if value is not None:
        with atomic.atomic_write(sidecars[name], "wb") as fh:
          np.save(fh, np.asarray(value).astype(dtype))
    atomic.write_json(sidecars["json"], dict(meta, shape=list(codes.shape), dtype="uint32"))
    with atomic.atomic_write(out, "wb") as fh:  # Last: its presence means the sidecars exist.
      np.save(fh, codes)
    written[_stem(path)] = out
  written["encoder"] = os.path.join(out_dir, "encoder.json")
  atomic.write_json(written["encoder"], state)
  return written


# ----------------------------------------------------------------------------------- indexes


def build_index(features: str | Sequence[str], out: str, *, ids: np.ndarray | None = None,
                labels: np.ndarray | None = None, nbits: int | None = None,
                metadata: dict[str, Any] | None = None, fusion: str = "none",
                fusion_weights: Sequence[float] | None = None) -> FloatIndex | BinaryIndex:
  """A FloatIndex (float features) or BinaryIndex (uint32 codes / bool bits) of .npy file(s).

  Ids and labels default to the file's `.ids.npy` / `.labels.npy` sidecars; the provenance
  record and class names come from its `.json` sidecar, so the index is searchable by image
  when the vectors came from `extract_split` / `hash_feature_files`. Several float feature files
  of the same images (equal ids) are fused into one descriptor (`features.fuse`: `fusion`
  "none" = concatenation or "l2" = each part L2-normalised, `fusion_weights` per part), e.g.
  seed 000's AL = F6 + fc8; the record then lists every source. Saved atomically to `out`.
  """
  paths = [features] if isinstance(features, str) else list(features)
  if not paths:
    raise ValueError("no features file given")
  parts = [extract_lib.load_features(p, mmap=False, require_metadata=False) for p in paths]
  saved = parts[0]
  x = saved.features
  records = [provenance_lib.from_metadata(p.metadata) for p in parts]
  record = records[0]
  if len(parts) > 1:
    for path, part in zip(paths, parts):
      if part.features.ndim != 2 or part.features.dtype.kind != "f":
        raise ValueError(f"fused parts must be float features (n, d), got {part.features.dtype}"
                         f"{list(part.features.shape)} in {path}")
      if part.features.shape[0] != x.shape[0] or (part.ids is not None and saved.ids is not None
                                                  and not np.array_equal(part.ids, saved.ids)):
        raise ValueError(f"{path} holds other images than {paths[0]} (row count or ids differ);"
                         " fused parts must describe the same images in the same order")
    x = fuse_lib.fuse([p.features for p in parts], normalize=fusion,
                      weights=None if fusion_weights is None else list(fusion_weights))
    if all(r is not None for r in records):
      record = dataclasses.replace(
          records[0], sources=[src for r in records for src in r.sources],
          fusion={"normalize": fusion, "weights": None if fusion_weights is None
                  else [float(w) for w in fusion_weights],
                  # Each part's input size (seed 000 fuses LeNet-L at 384x256 with AlexNet at
                  # 227x227); query-by-image resizes a photo for each part.
                  "image_shapes": [(r.dataset or {}).get("image_shape") for r in records]})
    else:
      record = None
  if x.ndim != 2:
    raise ValueError(f"features must be 2-D, got shape {x.shape}")
  ids = saved.ids if ids is None else np.asarray(ids)
  labels = saved.labels if labels is None else np.asarray(labels)
  if labels is not None and (labels.shape != (x.shape[0],) or labels.dtype.kind not in "iu"):
    raise ValueError(f"labels must be ({x.shape[0]},) integers, got {labels.shape} "
                     f"{labels.dtype}")
  meta = index_metadata(record, labels, saved.metadata.get("class_names"),
                        source=[os.path.abspath(p) for p in paths] if len(paths) > 1
                        else os.path.abspath(paths[0]), **(metadata or {}))
  if x.dtype == np.bool_:
    index, x = BinaryIndex(x.shape[1], metadata=meta), np.asarray(pack_bits(x))
  elif x.dtype == np.uint32:
    index = BinaryIndex(nbits or 32 * x.shape[1], metadata=meta)
  elif x.dtype.kind == "f":
    index = FloatIndex(x.shape[1], metadata=meta)
  else:
    raise ValueError(f"features dtype {x.dtype} is not float, uint32 codes or bool bits")
  index.add(x, ids=ids)
  index.save(out)
  return index


def augment_index(index_path: str, out: str, k: int, *, alpha: float = 3.0,
                  chunk_size: int | None = None) -> FloatIndex:
  """Database-side augmentation (DBA) of a saved float index, written to `out` atomically.

  Every vector becomes unit(sum_{i<k} max(cos_i, 0)**alpha unit(x_{n_i})) over its k nearest
  stored vectors, itself included (`kernels.database_augmentation`), so near-duplicates and
  the members of a tight group move together; rows, ids and metadata (provenance, labels) are
  kept, and metadata "augmentation" records {"method": "dba", "k", "alpha", "source"}. The
  result is a cosine index (`FloatIndex(normalize=True)`): queries are L2-normalised before
  they are ranked against the unit rows, by every search path (cbir-search, cbir-serve,
  cbir-index search, cbir-evaluate), and `cbir-search --expand` uses its rows directly.

  Args:
    index_path: a FloatIndex file (a binary index is refused: DBA sums real vectors).
    out: the augmented index's path (may not be `index_path`: the source stays as it was).
    k: neighbours per vector including itself, 1 <= k <= rows (1 only normalises).
    alpha: the weight exponent, finite >= 0.
    chunk_size: database rows per step of the neighbour search (None = automatic).
  """
  from cbir_jax.kernels import expansion  # pylint: disable=import-outside-toplevel
  if os.path.abspath(out) == os.path.abspath(index_path):
    raise ValueError(f"the augmented index must go to another file than its source, got "
                     f"{out!r} for both")
  index = load_index(index_path)
  if not isinstance(index, FloatIndex):
    raise ValueError(f"database-side augmentation needs a float index (it sums real vectors); "
                     f"{index_path!r} holds a {type(index).__name__}")
  if "augmentation" in index.metadata:
    raise ValueError(f"{index_path!r} is augmented already ({index.metadata['augmentation']}); "
                     "augment the index it was made from")
  k = expansion.check_neighbours(k, len(index), "augmentation")
  alpha = expansion.check_alpha(alpha)
  vectors = np.asarray(expansion.database_augmentation(
      index.vectors, k, alpha=alpha, chunk_size=chunk_size))
  metadata = dict(index.metadata, augmentation={
      "method": "dba", "k": k, "alpha": alpha, "source": os.path.basename(index_path)})
  augmented = FloatIndex(index.dim, chunk_size=index.chunk_size, storage=index.storage,
                         normalize=True, metadata=metadata)
  augmented.add(vectors, ids=index.ids)
  augmented.save(out)
  return augmented


def search_index_file(index_path: str, queries: str, k: int, *, out: str | None = None
                      ) -> dict[str, np.ndarray]:
  """{"D", "I" (ids), and "L" (labels of the hits) when the index knows labels} of a .npy of
  queries (float, uint32 codes or bool bits, as the index); saved to `out` (.npz) atomically."""
  index = load_index(index_path)
  q = np.load(queries)
  if isinstance(index, BinaryIndex) and q.dtype == np.bool_:
    q = np.asarray(pack_bits(q))
  d, i = index.search(q, k)
  result = {"D": d, "I": i}
  labels = index.metadata.get("labels")
  if labels is not None:
    result["L"] = np.asarray(labels, np.int64)[protocol.ids_to_positions(index.ids, i)]
  if out:
    with atomic.atomic_write(out, "wb") as f:
      np.savez(f, **result)
  return result
