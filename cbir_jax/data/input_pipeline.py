"""Input pipeline: normalisation, seeded exactly-resumable train batches (grain), eval batches.

Training batches are a grain pipeline (`grain.MapDataset.range(...).map(make_batch)` with
grain's prefetch threads). The training contract asks that a run restarted at step s yields
exactly the batches a run from step 0 yields from s on, on any number of processes, so batch
`step` is a pure function of `(seed, step)`: it belongs to epoch `e = step // steps_per_epoch`,
whose order is `np.random.default_rng((seed, e)).permutation(n)`, and its augmentation draws
from `np.random.default_rng((seed, e, step))` (the order every published run of this project
used; grain's own `shuffle` would change it). The iterator is a `grain.DatasetIterator`: its
state (`{"next_index": step}`) is saved with every checkpoint by orbax
(`train.checkpoint.Checkpointer.save(..., data_iterator=...)`) and restored on resume, and
`start_step` positions a fresh one. The arrays themselves come decoded from
`datasets.load_split` (the data sets trained on here are at most a few tens of thousands of
small images); collections that do not fit in memory go through `data.sources` (grain
random-access sources decoded in worker threads). Measurement of grain against the
hand-written NumPy prefetch thread it replaced: docs/ARCHITECTURE.md ("data").
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import grain
import jax
import numpy as np

# Length of the (endless) training dataset: grain's MapDataset needs one.
_ENDLESS = 2**62


def normalize(images: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
  """Maps uint8 pixels to float32 in [-1, 1]: (x / 255 - 0.5) / 0.5.

  The one preprocessing step shared by training, feature extraction and search. Works on NumPy
  and jax arrays (jit-able); the output is the same array type as the input.

  Args:
    images: uint8[..., h, w, c] (any leading shape).

  Returns:
    float32 array of the same shape.
  """
  if images.dtype != np.uint8:
    raise TypeError(f"normalize expects uint8 images, got dtype {images.dtype}")
  return (images.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def _check_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8[n, h, w, c], got {images.dtype}{list(images.shape)}")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
  return images, labels.astype(np.int32, copy=False)


def crop_padding_for(height: int, width: int) -> int:
  """Padding used by the random crop: max(1, round(min(h, w) / 8)) pixels (4 for 32x32)."""
  return max(1, int(round(min(height, width) / 8)))


def augment_batch(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Random horizontal flip (p = 0.5) and random crop with zero padding, per example.

  Each image is zero-padded by `crop_padding_for(h, w)` pixels on every side and an h x w window
  is cut at a uniformly drawn offset; then it is mirrored left-right with probability 0.5.

  Args:
    images: uint8[b, h, w, c].
    rng: the generator every random draw comes from (so the result is a function of its state).

  Returns:
    uint8[b, h, w, c].
  """
  b, h, w, _ = images.shape
  pad = crop_padding_for(h, w)
  flips = rng.random(b) < 0.5
  dy = rng.integers(0, 2 * pad + 1, size=b)
  dx = rng.integers(0, 2 * pad + 1, size=b)
  out = np.zeros_like(images)
  for i in range(b):
    # Window [dy, dy + h) x [dx, dx + w) of the padded image = source rows/cols shifted by -pad.
    sy, sx = dy[i] - pad, dx[i] - pad
    src = images[i, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)]
    out[i, max(-sy, 0):max(-sy, 0) + src.shape[0], max(-sx, 0):max(-sx, 0) + src.shape[1]] = src
    if flips[i]:
      out[i] = out[i, :, ::-1].copy()
  return out


AUGMENT_POLICIES = ("flip_crop", "strong")
# The "strong" policy's ranges (what ImageNet-style training of small data sets uses).
STRONG_SCALE = (0.25, 1.0)       # area fraction of the random resized crop
STRONG_RATIO = (3 / 4, 4 / 3)    # its aspect ratio (log-uniform)
STRONG_JITTER = 0.4              # brightness, contrast, saturation factors in [1 - j, 1 + j]


def strong_augment_batch(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Random resized crop, horizontal flip and colour jitter, per example.

  Each image: a window of area fraction in `STRONG_SCALE` and aspect ratio in `STRONG_RATIO`
  (log-uniform; clipped to the image) at a uniform position, resized back to h x w (PIL
  bilinear); mirrored with probability 0.5; then brightness, contrast and saturation each
  scaled by a factor drawn from [1 - STRONG_JITTER, 1 + STRONG_JITTER] (contrast around the
  image's mean grey, saturation around each pixel's grey), clipped to [0, 255].

  Args:
    images: uint8[b, h, w, c] (c = 1 or 3; saturation applies to c = 3 only).
    rng: the generator every random draw comes from.

  Returns:
    uint8[b, h, w, c].
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel
  b, h, w, c = images.shape
  area = rng.uniform(*STRONG_SCALE, size=b) * h * w
  ratio = np.exp(rng.uniform(np.log(STRONG_RATIO[0]), np.log(STRONG_RATIO[1]), size=b))
  ch = np.clip(np.round(np.sqrt(area / ratio)), 1, h).astype(int)
  cw = np.clip(np.round(np.sqrt(area * ratio)), 1, w).astype(int)
  top = (rng.random(b) * (h - ch + 1)).astype(int)
  left = (rng.random(b) * (w - cw + 1)).astype(int)
  flips = rng.random(b) < 0.5
  factors = rng.uniform(1 - STRONG_JITTER, 1 + STRONG_JITTER, size=(b, 3))
  out = np.empty((b, h, w, c), np.float32)
  for i in range(b):
    window = images[i, top[i]:top[i] + ch[i], left[i]:left[i] + cw[i]]
    pil = Image.fromarray(window[..., 0] if c == 1 else window)
    resized = np.asarray(pil.resize((w, h), Image.BILINEAR), np.float32)
    out[i] = resized.reshape(h, w, c)
    if flips[i]:
      out[i] = out[i, :, ::-1]
  grey = out.mean(axis=-1, keepdims=True) if c == 3 else out
  out = out * factors[:, 0, None, None, None]                                   # brightness
  mean = grey.mean(axis=(1, 2, 3), keepdims=True) * factors[:, 0, None, None, None]
  out = mean + (out - mean) * factors[:, 1, None, None, None]                   # contrast
  if c == 3:
    grey = out.mean(axis=-1, keepdims=True)
    out = grey + (out - grey) * factors[:, 2, None, None, None]                 # saturation
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of `epoch`: int64[n], `np.random.default_rng((seed, epoch)).permutation`."""
  return np.random.default_rng((seed, epoch)).permutation(n)


def global_batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Positions (int64[batch_size]) of the global batch number `step`; remainder dropped."""
  steps_per_epoch = n // batch_size
  epoch, within = divmod(step, steps_per_epoch)
  return epoch_permutation(n, seed, epoch)[within * batch_size:(within + 1) * batch_size]


def _resolve_process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  process_index = jax.process_index() if process_index is None else int(process_index)
  process_count = jax.process_count() if process_count is None else int(process_count)
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index < process_count, got process_index="
                     f"{process_index}, process_count={process_count}")
  return process_index, process_count


def train_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                  start_step: int = 0, augment: bool = False, augment_policy: str = "flip_crop",
                  process_index: int | None = None,
                  process_count: int | None = None, prefetch: int = 2,
                  preprocess: Callable[[np.ndarray], Any] | None = None
                  ) -> grain.DatasetIterator:
  """Infinite, seeded training batches that resume exactly at any step (a grain iterator).

  Global batch `step` is `global_batch_indices(n, batch_size, seed, step)`: epoch
  e = step // (n // batch_size) is the permutation drawn from (seed, e), cut into n // batch_size
  batches (the remainder of each epoch is dropped). With `augment`, the whole global batch is
  augmented (`augment_batch`) with a generator seeded by (seed, e, step) before slicing, so the
  union over processes does not depend on the process count. This process gets rows
  [process_index * b, (process_index + 1) * b) of the global batch, b = batch_size //
  process_count. Starting at `start_step` yields exactly what a run from 0 yields from there on.

  Args:
    images: uint8[n, h, w, c], held in memory.
    labels: int[n].
    batch_size: global batch size, in [1, n] and divisible by process_count.
    seed: integer seed of the order and the augmentation.
    start_step: first step to yield (>= 0).
    augment: augment the training batches, with
    augment_policy: "flip_crop" (random flip + random crop with padding, `augment_batch`) or
      "strong" (random resized crop + flip + colour jitter, `strong_augment_batch`).
    preprocess: uint8 images -> float32 network input (e.g. imported weights' preprocessing);
      None: `normalize`.
    process_index, process_count: this process's slot; default jax.process_index() /
      jax.process_count().
    prefetch: batches prepared ahead by a grain thread (0: none).

  Returns:
    A `grain.DatasetIterator` of {"image": float32[b, h, w, c] normalised to [-1, 1],
    "label": int32[b]} for steps start_step, start_step + 1, ...; `get_state()` is
    {"next_index": the next step} (what the checkpoints save; `batch_position` reads it), and
    `close()` stops its thread.
  """
  images, labels = _check_arrays(images, labels)
  n = images.shape[0]
  process_index, process_count = _resolve_process(process_index, process_count)
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  if prefetch < 0:
    raise ValueError(f"prefetch must be >= 0, got {prefetch}")
  if augment_policy not in AUGMENT_POLICIES:
    raise ValueError(f"augment_policy must be one of {AUGMENT_POLICIES}, got {augment_policy!r}")
  augmenter = augment_batch if augment_policy == "flip_crop" else strong_augment_batch
  local = batch_size // process_count
  steps_per_epoch = n // batch_size

  def make(step: int) -> dict:
    index = global_batch_indices(n, batch_size, seed, step)
    batch = images[index]
    if augment:
      batch = augmenter(batch, np.random.default_rng((seed, step // steps_per_epoch, step)))
    part = slice(process_index * local, (process_index + 1) * local)
    return {"image": _prepare(batch[part], preprocess), "label": labels[index[part]]}

  dataset = grain.MapDataset.range(0, _ENDLESS).map(make)
  # One thread keeps the order and holds at most `prefetch` batches; `make` is NumPy-bound.
  iterator = iter(dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=1 if prefetch else 0, prefetch_buffer_size=prefetch)))
  if start_step:
    iterator.set_state(dict(iterator.get_state(), next_index=int(start_step)))
  return iterator


def batch_position(iterator: grain.DatasetIterator) -> int:
  """The step of the next batch `train_batches`' iterator yields (from its grain state)."""
  state = iterator.get_state()
  if not isinstance(state, dict) or "next_index" not in state:
    raise ValueError(f"not a train_batches iterator state: {state!r}")
  return int(state["next_index"])


def _prepare(images: np.ndarray, preprocess) -> np.ndarray:
  return normalize(images) if preprocess is None else np.asarray(preprocess(images), np.float32)


def eval_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 process_index: int | None = None, process_count: int | None = None,
                 preprocess: Callable[[np.ndarray], Any] | None = None) -> Iterator[dict]:
  """All examples once, in order, in global batches of exactly `batch_size` (the last padded).

  Global batch j holds examples [j * batch_size, (j + 1) * batch_size), the rows past n being
  padding; this process gets rows [process_index * b, (process_index + 1) * b) of it,
  b = batch_size // process_count (with one process: the whole batch).

  Args:
    images: uint8[n, h, w, c].
    labels: int[n].
    batch_size: global batch size >= 1, divisible by process_count.
    process_index, process_count: default jax.process_index() / jax.process_count().
    preprocess: as in `train_batches`.

  Yields:
    {"image": float32[b, h, w, c] normalised, "label": int32[b], "mask": bool[b]}:
    ceil(n / batch_size) batches; padded rows have image 0 (normalised: -1), label 0 and mask
    False, so sums weighted by mask count every example exactly once over all processes.
  """
  images, labels = _check_arrays(images, labels)
  process_index, process_count = _resolve_process(process_index, process_count)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
  local = batch_size // process_count
  n = images.shape[0]
  for global_start in range(0, n, batch_size):
    start = min(global_start + process_index * local, n)
    stop = min(start + local, n)
    image = images[start:stop]
    label = labels[start:stop]
    valid = image.shape[0]
    if valid < local:
      image = np.concatenate([image, np.zeros((local - valid,) + image.shape[1:], np.uint8)])
      label = np.concatenate([label, np.zeros(local - valid, np.int32)])
    yield {"image": _prepare(image, preprocess), "label": label, "mask": np.arange(local) < valid}
