"""Streaming index build: a folder or ArrayRecord tfds set -> chunked features -> one index.

`build_index_streaming` never holds the collection: grain threads decode and resize a bounded
window of images (`data.sources.decoded_batches`), `features.extract` runs them on all local
devices, and every `chunk_size` images the features (and codes, with a hash encoder) of that
chunk are written atomically to `<out>.parts/chunk-<k>.npz`. A build that is killed and run
again skips the chunks already written, so only the chunk in flight is lost; since chunks and
batches are aligned to fixed positions, every batch holds the same images as in an
uninterrupted build and the final index is identical. With N processes (`jax.distributed`)
process p computes chunks k = p (mod N); after a barrier process 0 merges every chunk, in order,
into the index, written atomically, and removes the parts folder (the parts folder must be on a
file system every process sees; a process that fails leaves the others waiting at the barrier
until jax.distributed's timeout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import sys
from typing import Any, Iterator

from absl import logging
import jax
import numpy as np
from tqdm import tqdm

from cbir_jax import atomic
from cbir_jax import query
from cbir_jax.data import sources as sources_lib
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.index import BinaryIndex, FloatIndex
from cbir_jax.jobs.networks import Restored, check_endpoint, index_metadata
from cbir_jax.train import checkpoint as checkpoint_lib

MANIFEST = "manifest.json"


@dataclasses.dataclass
class StreamingBuild:
  """What `build_index_streaming` did on this process.

  `index` / `codes_index` are the merged indexes (process 0; None elsewhere), `computed` the
  images this process decoded and extracted in this call, `resumed_chunks` the chunks of this
  process found already written, `skipped` the relative paths of unreadable images (process 0:
  all of them).
  """
  index: FloatIndex | None
  codes_index: BinaryIndex | None
  computed: int
  resumed_chunks: int
  skipped: list[str]


def input_shape_of(run: Restored, image_size: tuple[int, int] | None) -> tuple[int, int, int]:
  """(h, w, c) the network takes: a run's checkpointed input shape (h, w overridden by
  `image_size`), or `image_size` x 3 channels for imported weights (then required)."""
  if run.workdir is not None:
    ckpt = checkpoint_lib.Checkpointer(os.path.join(run.workdir, "checkpoints"),
                                       async_save=False, read_only=True)
    try:
      _, h, w, c = ckpt.read_meta(run.step)["input_shape"]
    finally:
      ckpt.close()
    if image_size is not None:
      h, w = image_size
    return int(h), int(w), int(c)
  if image_size is None:
    raise ValueError("imported weights need the image size the images are resized to "
                     "(image_size)")
  return int(image_size[0]), int(image_size[1]), 3


def _parts_dir(out: str) -> str:
  return os.path.abspath(out) + ".parts"


def _chunk_path(parts: str, k: int) -> str:
  return os.path.join(parts, f"chunk-{k:06d}.npz")


def _check_manifest(parts: str, manifest: dict[str, Any]) -> None:
  """Writes the build's settings to the parts folder, or checks them against a previous run's."""
  path = os.path.join(parts, MANIFEST)
  if os.path.exists(path):
    with open(path) as f:
      found = json.load(f)
    if found != manifest:
      diff = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
      raise ValueError(f"{parts} holds chunks of a build with other settings ({', '.join(diff)}"
                       f" differ); finish that build with its settings, or delete the folder")
  else:
    atomic.write_json(path, manifest)


def _chunk_blocks(batches: Iterator[dict], count: int, batch_size: int, found: dict,
                  bar: tqdm) -> Iterator[np.ndarray]:
  """Readable images of the next `count` records, one block per batch; records the rest."""
  for _ in range(-(-count // batch_size)):
    batch = next(batches)
    ok = batch["ok"]
    for key in ("id", "label"):
      found[key].append(batch[key][ok])
    found["skipped"].extend(batch["path"][~ok].tolist())
    bar.update(len(ok))
    if ok.any():
      yield batch["image"][ok]


def build_index_streaming(run: Restored, endpoint: str, source: Any, out: str, *,
                          image_shape: tuple[int, int, int], dataset: dict[str, Any],
                          chunk_size: int = 8192, batch_size: int = 256,
                          encoder: encoder_lib.HashEncoder | None = None,
                          codes_out: str | None = None, num_threads: int = 4,
                          progress: bool | None = None) -> StreamingBuild:
  """Builds a FloatIndex of `endpoint` features of every image of `source`, streaming.

  Args:
    run: the network (`jobs.restore` or `jobs.import_weights`).
    endpoint: one of its endpoints.
    source: a `data.sources` random-access source (ImageFolderSource, TfdsSource).
    out: the index file to write (atomically, by process 0).
    image_shape: (h, w, c) every image is decoded to (`query.decode_image`, exactly what
      query-by-image does to a photo).
    dataset: the provenance record's `dataset` entry (name, split, manual_dir, ...);
      image_size, image_shape and class_names are filled in here.
    chunk_size: images per chunk file (the work lost by a kill); a multiple of batch_size.
    batch_size: images per forward pass (a multiple of the local device count).
    encoder: a fitted HashEncoder: codes of every chunk go to a BinaryIndex at `codes_out`.
    codes_out: the BinaryIndex file (required with `encoder`).
    num_threads: grain decoding threads.
    progress: a tqdm bar (images/s, ETA); default on only when stderr is a TTY.

  Memory: about (2 * batch_size prefetched + 2 batches) decoded images, one chunk of features,
  and on process 0 at the end the index itself.

  Returns:
    A `StreamingBuild`.

  Raises:
    ValueError: bad sizes, an unknown endpoint, a parts folder of other settings, or no
      readable image at all.
  """
  check_endpoint(run.model_name, endpoint)
  for name, value in (("chunk_size", chunk_size), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  if chunk_size % batch_size:
    raise ValueError(f"chunk_size ({chunk_size}) must be a multiple of batch_size "
                     f"({batch_size}) so that a resumed build makes the same batches")
  if (encoder is None) != (codes_out is None):
    raise ValueError("give both encoder and codes_out (a BinaryIndex of the codes), or neither")
  image_shape = tuple(int(s) for s in image_shape)
  process, processes = jax.process_index(), jax.process_count()
  parts = _parts_dir(out)
  os.makedirs(parts, exist_ok=True)
  encoder_state = None if encoder is None else encoder.state()
  manifest = {"source": source.fingerprint(), "network": dataclasses.asdict(run.source(endpoint)),
              "image_shape": list(image_shape), "chunk_size": chunk_size,
              "batch_size": batch_size, "encoder_sha256": None if encoder_state is None else
              hashlib.sha256(json.dumps(encoder_state, sort_keys=True).encode()).hexdigest()}
  _check_manifest(parts, manifest)

  n = len(source)
  sizes = [min(chunk_size, n - start) for start in range(0, n, chunk_size)]
  mine = [k for k in range(len(sizes)) if k % processes == process]
  todo = [k for k in mine if not os.path.exists(_chunk_path(parts, k))]
  positions = np.concatenate([np.arange(k * chunk_size, k * chunk_size + sizes[k])
                              for k in todo] or [np.zeros(0, np.int64)])
  batches = sources_lib.decoded_batches(
      source, positions, image_shape=image_shape, batch_size=batch_size,
      decode=query.decode_image, num_threads=num_threads)
  if progress is None:
    progress = sys.stderr.isatty()
  bar = tqdm(total=sum(sizes[k] for k in mine), initial=sum(sizes[k] for k in mine) -
             len(positions), disable=not progress, unit="img", smoothing=0.1,
             desc=f"index {endpoint}" + (f" [{process}/{processes}]" if processes > 1 else ""))
  if len(todo) < len(mine):
    logging.info("resuming: %d of this process's %d chunks are already in %s",
                 len(mine) - len(todo), len(mine), parts)
  try:
    for k in todo:
      found = {"id": [], "label": [], "skipped": []}
      blocks = _chunk_blocks(batches, sizes[k], batch_size, found, bar)
      first = next(blocks, None)
      features = (np.zeros((0, 0), np.float32) if first is None else extract_lib.extract(
          run.model, run.variables, itertools.chain([first], blocks), endpoint,
          batch_size=batch_size, preprocess=run.preprocess, progress=False))
      chunk = {"features": features, "ids": np.concatenate(found["id"]),
               "labels": np.concatenate(found["label"]),
               "skipped": np.asarray(found["skipped"], dtype=str)}
      if encoder is not None and len(features):
        chunk["codes"] = encoder.encode(features)
      with atomic.atomic_write(_chunk_path(parts, k), "wb") as f:
        np.savez(f, **chunk)
  finally:
    bar.close()
  if processes > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("cbir_jax.build_index_streaming: chunks written")
  built = StreamingBuild(None, None, len(positions), len(mine) - len(todo), [])
  if process == 0:
    built = _merge(parts, len(sizes), out, run, endpoint, dataset, image_shape, source,
                   encoder_state, codes_out, built)
  if processes > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("cbir_jax.build_index_streaming: merged")
  return built


def _merge(parts: str, num_chunks: int, out: str, run: Restored, endpoint: str,
           dataset: dict[str, Any], image_shape: tuple[int, int, int], source: Any,
           encoder_state: dict[str, Any] | None, codes_out: str | None,
           built: StreamingBuild) -> StreamingBuild:
  """Concatenates the chunk files in order into the index (and codes index); removes `parts`."""
  missing = [k for k in range(num_chunks) if not os.path.exists(_chunk_path(parts, k))]
  if missing:
    raise ValueError(f"chunks {missing[:5]} of {parts} are missing after every process "
                     "finished; run the build again to compute them")
  loaded = []
  for k in range(num_chunks):
    with np.load(_chunk_path(parts, k), allow_pickle=False) as z:
      loaded.append({key: z[key] for key in z.files})
  ids = np.concatenate([c["ids"] for c in loaded])
  if not len(ids):
    raise ValueError(f"none of the {len(source)} images of {source!r} could be read")
  features = np.concatenate([c["features"] for c in loaded if len(c["ids"])])
  labels = np.concatenate([c["labels"] for c in loaded])
  skipped = [str(p) for c in loaded for p in c["skipped"]]
  if skipped:
    logging.warning("skipped %d unreadable image(s): %s%s", len(skipped),
                    ", ".join(skipped[:10]), " ..." if len(skipped) > 10 else "")
  record = provenance_lib.Provenance([run.source(endpoint)], dataset=dict(
      dataset, image_size=list(image_shape[:2]), image_shape=list(image_shape),
      class_names=list(source.class_names)))
  extra = {"source": source.fingerprint(), "skipped": skipped}
  index = FloatIndex(features.shape[1], metadata=index_metadata(
      record, labels, source.class_names, **extra))
  index.add(features, ids=ids)
  index.save(out)
  codes_index = None
  if codes_out is not None:
    encoder = encoder_lib.HashEncoder.from_state(encoder_state)
    codes_index = BinaryIndex(encoder.bits, metadata=index_metadata(
        record.with_encoder(encoder_state), labels, source.class_names, **extra))
    codes_index.add(np.concatenate([c["codes"] for c in loaded if len(c["ids"])]), ids=ids)
    codes_index.save(codes_out)
  shutil.rmtree(parts)
  return dataclasses.replace(built, index=index, codes_index=codes_index, skipped=skipped)
