"""Batched feature extraction: model endpoint -> f32[n, d], jit once, sharded, streamed to .npy.

`extract` normalises uint8 images with `cbir_jax.data.input_pipeline.normalize` (the preprocessing the
models were trained with) inside one jit-compiled forward pass of fixed batch shape; the last batch
is zero-padded and its padding rows are dropped on the host. With more than one local device the
batch is split over a 1-D mesh (variables replicated). With `out=` the rows are written into a
.npy memory map under a temporary name that is renamed onto `out` only when complete, with a JSON
sidecar of metadata (`save_features` / `load_features`), so memory stays bounded by one batch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from cbir_jax import atomic
from cbir_jax.data import input_pipeline

PREPROCESSING = "uint8 -> float32 (x / 255 - 0.5) / 0.5 (cbir_jax.data.input_pipeline.normalize)"


class FeatureFile(NamedTuple):
  """A saved feature matrix and its sidecars (labels/ids are None when not saved)."""
  features: np.ndarray      # f32[n, d] (read-only memory map when loaded with mmap)
  labels: np.ndarray | None  # int32[n]
  ids: np.ndarray | None     # int64[n]
  metadata: dict[str, Any]


def sidecar_paths(path: str | os.PathLike) -> dict[str, str]:
  """Paths stored next to features `<stem>.npy`: `<stem>.json`, `<stem>.labels.npy`, `.ids.npy`."""
  path = os.fspath(path)
  if not path.endswith(".npy"):
    raise ValueError(f"feature files must end in .npy, got {path!r}")
  stem = path[:-len(".npy")]
  return {"json": stem + ".json", "labels": stem + ".labels.npy", "ids": stem + ".ids.npy"}


def _tmp_name(path: str) -> str:
  head, tail = os.path.split(path)
  return os.path.join(head, f".{tail}.tmp-{os.getpid()}")


def _write_json_atomic(path: str, obj: Mapping[str, Any]) -> None:
  atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _save_npy_atomic(path: str, array: np.ndarray) -> None:
  with atomic.atomic_write(path, "wb") as f:
    np.save(f, array)


def save_features(path: str | os.PathLike, features: Any, metadata: Mapping[str, Any], *,
                  labels: Any = None, ids: Any = None) -> None:
  """Writes f32[n, d] features to `path` (.npy) and metadata (+ shape, dtype) to the JSON sidecar.

  Every file is written under a temporary name and renamed into place. `labels` (int[n]) and
  `ids` (int[n]) go to `<stem>.labels.npy` (int32) and `<stem>.ids.npy` (int64) when given.
  """
  paths = sidecar_paths(path)
  x = np.asarray(features, np.float32)
  if x.ndim != 2:
    raise ValueError(f"features must have shape (n, d), got {x.shape}")
  for name, value, dtype in (("labels", labels, np.int32), ("ids", ids, np.int64)):
    if value is not None:
      value = np.asarray(value)
      if value.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape ({x.shape[0]},), got {value.shape}")
      _save_npy_atomic(paths[name], value.astype(dtype))
  _write_json_atomic(paths["json"], _full_metadata(metadata, x.shape))
  _save_npy_atomic(os.fspath(path), x)  # last: its presence means the sidecars are complete


def _full_metadata(metadata: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
  meta = dict(metadata)
  meta.update(shape=[int(s) for s in shape], dtype="float32")
  meta.setdefault("preprocessing", PREPROCESSING)
  return meta


def load_features(path: str | os.PathLike, *, mmap: bool = True,
                  require_metadata: bool = True) -> FeatureFile:
  """Reads features written by `save_features` / `extract(out=...)` with their sidecars.

  With `require_metadata=False` a bare .npy (no JSON sidecar) is read with metadata {}.

  Raises:
    FileNotFoundError: `path` or (when required) its JSON sidecar is missing.
    ValueError: a file that is empty, truncated or not a .npy / JSON file (names the file).
  """
  paths = sidecar_paths(path)
  for p in (os.fspath(path),) + ((paths["json"],) if require_metadata else ()):
    if not os.path.exists(p):
      raise FileNotFoundError(f"feature file {p} does not exist")
  metadata = {}
  try:
    if os.path.exists(paths["json"]):
      with open(paths["json"]) as f:
        metadata = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"feature metadata {paths['json']} is not valid JSON: {e}") from e
  def read(p: str, mode: str | None) -> np.ndarray:
    try:
      return np.load(p, mmap_mode=mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise ValueError(f"{p} is not a readable .npy file (empty or truncated?): {e}") from e
  features = read(os.fspath(path), "r" if mmap else None)
  labels = read(paths["labels"], None) if os.path.exists(paths["labels"]) else None
  ids = read(paths["ids"], None) if os.path.exists(paths["ids"]) else None
  return FeatureFile(features, labels, ids, metadata)


def _check_endpoint(model: nn.Module, endpoint: str) -> None:
  available = getattr(model, "ENDPOINTS", None)
  if not isinstance(endpoint, str):
    raise TypeError(f"endpoint must be a str, got {endpoint!r}")
  if available is not None and endpoint not in available:
    raise ValueError(f"unknown endpoint {endpoint!r} for {type(model).__name__}; valid "
                     f"endpoints: {list(available)}")


def _check_block(block: np.ndarray, image_shape: tuple[int, ...] | None) -> None:
  if block.dtype != np.uint8 or block.ndim != 4:
    raise ValueError(f"images must be uint8[n, h, w, c], got {block.dtype}{list(block.shape)}")
  if image_shape is not None and block.shape[1:] != image_shape:
    raise ValueError(f"all images must have shape {image_shape}, got {block.shape[1:]}")


def _is_array(images: Any) -> bool:
  return isinstance(images, np.ndarray) or (hasattr(images, "shape") and
                                            hasattr(images, "__array__"))


def _batches(images: Any, batch_size: int) -> Iterator[np.ndarray]:
  """Re-batches an array or an iterable of uint8 [b_i, h, w, c] blocks into <= batch_size rows."""
  if _is_array(images):
    array = np.asarray(images)
    _check_block(array, None)
    for start in range(0, array.shape[0], batch_size):
      yield array[start:start + batch_size]
    return
  pending: list[np.ndarray] = []
  count = 0
  image_shape = None
  for block in images:
    block = np.asarray(block)
    _check_block(block, image_shape)
    image_shape = block.shape[1:]
    pending.append(block)
    count += block.shape[0]
    while count >= batch_size:
      merged = np.concatenate(pending)
      yield merged[:batch_size]
      pending, count = [merged[batch_size:]], count - batch_size
  if count:
    yield np.concatenate(pending)


def _make_mesh(mesh: Mesh | None) -> Mesh | None:
  if mesh is not None:
    if len(mesh.axis_names) != 1:
      raise ValueError(f"mesh must be 1-D, got axes {mesh.axis_names}")
    return mesh
  devices = jax.local_devices()
  return Mesh(np.asarray(devices), ("data",)) if len(devices) > 1 else None


@functools.partial(jax.jit, static_argnames=("model", "endpoint", "preprocess"))
def _forward(variables: Any, images: jax.Array, *, model: nn.Module, endpoint: str,
             preprocess: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
  """f32[b, d] endpoint features of uint8[b, h, w, c] images; follows the inputs' sharding.

  Module-level so jax's compilation cache serves every `extract` call with the same model,
  endpoint, preprocessing and batch shape (Linen modules are hashable dataclasses).
  """
  x = input_pipeline.normalize(images) if preprocess is None else preprocess(images)
  _, values = model.apply(variables, x, train=False, features=(endpoint,))
  return values[endpoint].reshape(images.shape[0], -1)


def extract(model: nn.Module, variables: Mapping[str, Any], images: Any, endpoint: str, *,
            batch_size: int, mesh: Mesh | None = None, out: str | os.PathLike | None = None,
            num_examples: int | None = None, metadata: Mapping[str, Any] | None = None,
            labels: Any = None, ids: Any = None, progress: bool | None = None,
            preprocess: Callable[[jax.Array], jax.Array] | None = None) -> np.ndarray:
  """Computes `endpoint` features of every image with one jit-compiled, batched forward pass.

  Args:
    model: a cbir_jax Linen model (`apply(variables, x, train=False, features=(endpoint,))`).
    variables: its variables ({"params": ..., ["batch_stats": ...]}).
    images: uint8[n, h, w, c] array, or an iterable of uint8[b_i, h, w, c] blocks (any b_i).
    endpoint: one of the model's endpoints (e.g. "f6" for LeNet-L).
    batch_size: images per forward pass (>= 1; a multiple of the mesh size). The last batch is
      zero-padded to batch_size and the padding rows are discarded.
    mesh: 1-D mesh to shard the batch over; default all local devices when there are > 1.
    out: optional .npy path: rows stream into a memory map under a temporary name, renamed onto
      `out` at the end, with the JSON sidecar (`metadata` + endpoint, model, shape, dtype,
      preprocessing) and optional `labels`/`ids` sidecars (see `save_features`).
    num_examples: n, required with `out` when `images` is an iterable; checked at the end.
    metadata: extra JSON-serialisable fields for the sidecar (model name, checkpoint step, ...).
    labels, ids: optional int[n] saved next to `out`.
    progress: tqdm bar; default on only when stderr is a TTY.
    preprocess: a jit-able, hashable map uint8[b, h, w, c] -> float32 network input (the
      preprocessing recorded with imported weights); None: `input_pipeline.normalize`, what the
      project's own training uses.

  Returns:
    f32[n, d] (d = the endpoint's flattened width): in memory, or a read-only memory map of
    `out`. Memory: one batch on device plus the output (none with `out`).

  Raises:
    ValueError: unknown endpoint (lists the model's endpoints), bad images/batch_size/shapes.
  """
  _check_endpoint(model, endpoint)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
  mesh = _make_mesh(mesh)
  if mesh is not None and batch_size % mesh.devices.size:
    raise ValueError(f"batch_size must be a multiple of the number of devices "
                     f"({mesh.devices.size}), got {batch_size}")
  if _is_array(images):
    images = np.asarray(images)
    _check_block(images, None)
    n = images.shape[0]
    if num_examples is not None and num_examples != n:
      raise ValueError(f"num_examples={num_examples} but images has {n} rows")
  else:
    if not isinstance(images, Iterable):
      raise TypeError(f"images must be an array or an iterable of arrays, got {type(images)}")
    n = num_examples
    if out is not None and n is None:
      raise ValueError("num_examples is required when streaming an iterable of images to `out`")
  if out is None and (labels is not None or ids is not None):
    raise ValueError("labels and ids are only saved next to `out`; pass out= or leave them None")
  sidecars = {}
  if out is not None:
    paths = sidecar_paths(out)
    for name, value, dtype in (("labels", labels, np.int32), ("ids", ids, np.int64)):
      if value is not None:
        value = np.asarray(value)
        if value.shape != (n,):
          raise ValueError(f"{name} must have shape ({n},), got {value.shape}")
        sidecars[paths[name]] = value.astype(dtype)

  data = None
  if mesh is not None:  # Batch split over the mesh, variables replicated; jit follows them.
    data = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))

  if progress is None:
    progress = sys.stderr.isatty()
  bar = tqdm(total=n, disable=not progress, unit="img", desc=f"extract {endpoint}")
  writer = None
  tmp = None
  chunks: list[np.ndarray] = []
  done = 0

  def store(result: jax.Array, valid: int) -> None:
    nonlocal writer, tmp, done
    feats = np.asarray(result)[:valid]
    if out is not None:
      if writer is None:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = _tmp_name(os.fspath(out)) + ".npy"
        writer = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                           shape=(n, feats.shape[1]))
      writer[done:done + valid] = feats
    else:
      chunks.append(feats)
    done += valid
    bar.update(valid)

  try:
    pending = None  # (result, valid rows) of the batch in flight: the host prepares the next one
    seen = 0        # while the device computes (jax dispatches asynchronously).
    for block in _batches(images, batch_size):
      valid = block.shape[0]
      seen += valid
      if n is not None and seen > n:
        raise ValueError(f"images yielded more than num_examples={n} rows")
      if valid < batch_size:
        pad = np.zeros((batch_size - valid,) + block.shape[1:], np.uint8)
        block = np.concatenate([block, pad])
      batch = jax.device_put(block, data) if data is not None else block
      result = _forward(variables, batch, model=model, endpoint=endpoint, preprocess=preprocess)
      if pending is not None:
        store(*pending)
      pending = (result, valid)
    if pending is not None:
      store(*pending)
    if n is not None and done != n:
      raise ValueError(f"images yielded {done} rows, expected num_examples={n}")
    if done == 0:
      raise ValueError("images is empty; need at least one image")
    if out is None:
      return np.concatenate(chunks)
    writer.flush()
    d = writer.shape[1]
    del writer
    writer = None
    meta = {"model": type(model).__name__, "endpoint": endpoint, "batch_size": batch_size}
    meta.update(metadata or {})
    for path, value in sidecars.items():
      _save_npy_atomic(path, value)
    # The .npy appears last: its presence means every sidecar is complete.
    _write_json_atomic(paths["json"], _full_metadata(meta, (n, d)))
    os.replace(tmp, os.fspath(out))
    tmp = None
    return np.load(os.fspath(out), mmap_mode="r")
  finally:
    bar.close()
    if writer is not None:
      del writer
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)
