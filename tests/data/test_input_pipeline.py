"""pipeline: normalisation, exact resume, per-process slicing, augmentation, eval padding."""

import itertools

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.data import input_pipeline


def _data(n=23, h=6, w=5, c=3):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
  labels = np.arange(n, dtype=np.int32)  # label = position, so batches reveal their indices
  return images, labels


def _take(it, k):
  return list(itertools.islice(it, k))


def test_normalize_values_and_types():
  x = np.array([0, 255, 128], np.uint8)
  y = input_pipeline.normalize(x)
  assert y.dtype == np.float32
  np.testing.assert_allclose(y, [-1.0, 1.0, (128 / 255 - 0.5) / 0.5], rtol=0, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(input_pipeline.normalize(jnp.asarray(x))), y)
  with pytest.raises(TypeError, match="uint8"):
    input_pipeline.normalize(np.zeros(3, np.float32))


def test_train_batches_epochs_are_permutations_and_drop_remainder():
  images, labels = _data()
  batches = _take(input_pipeline.train_batches(images, labels, batch_size=5, seed=3, process_index=0,
                                         process_count=1), 8)
  assert batches[0]["image"].shape == (5, 6, 5, 3) and batches[0]["image"].dtype == np.float32
  assert batches[0]["label"].dtype == np.int32
  # 23 // 5 = 4 steps per epoch; each epoch covers 20 distinct examples.
  for epoch in range(2):
    seen = np.concatenate([b["label"] for b in batches[4 * epoch:4 * epoch + 4]])
    assert len(set(seen.tolist())) == 20
    np.testing.assert_array_equal(seen, input_pipeline.epoch_permutation(23, 3, epoch)[:20])
  # Epochs differ, images match labels and are normalised.
  assert not np.array_equal(batches[0]["label"], batches[4]["label"])
  np.testing.assert_array_equal(batches[1]["image"],
                                input_pipeline.normalize(images[batches[1]["label"]]))


def test_train_batches_exact_resume_and_seed_dependence():
  images, labels = _data()
  kw = dict(batch_size=4, seed=7, augment=True, process_index=0, process_count=1)
  full = _take(input_pipeline.train_batches(images, labels, **kw), 14)
  resumed = _take(input_pipeline.train_batches(images, labels, start_step=9, **kw), 5)
  for a, b in zip(full[9:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  no_prefetch = _take(input_pipeline.train_batches(images, labels, prefetch=0, **kw), 14)
  for a, b in zip(full, no_prefetch):
    np.testing.assert_array_equal(a["image"], b["image"])
  other = _take(input_pipeline.train_batches(images, labels, **{**kw, "seed": 8}), 1)
  assert not np.array_equal(full[0]["label"], other[0]["label"])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), batch_size=st.integers(1, 30), seed=st.integers(0, 2**31),
       start=st.integers(0, 40), augment=st.booleans())
def test_train_batches_resume_property(n, batch_size, seed, start, augment):
  batch_size = min(batch_size, n)
  images, labels = _data(n=n, h=4, w=3, c=1)
  kw = dict(batch_size=batch_size, seed=seed, augment=augment, process_index=0, process_count=1,
            prefetch=0)
  full = _take(input_pipeline.train_batches(images, labels, **kw), start + 3)
  resumed = _take(input_pipeline.train_batches(images, labels, start_step=start, **kw), 3)
  for a, b in zip(full[start:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_train_batches_process_slices_make_up_the_global_batch():
  images, labels = _data()
  kw = dict(batch_size=6, seed=1, augment=True)
  whole = _take(input_pipeline.train_batches(images, labels, process_index=0, process_count=1, **kw), 5)
  parts = [_take(input_pipeline.train_batches(images, labels, process_index=p, process_count=3, **kw), 5)
           for p in range(3)]
  for step in range(5):
    assert parts[0][step]["image"].shape[0] == 2
    for key in ("image", "label"):
      np.testing.assert_array_equal(
          np.concatenate([parts[p][step][key] for p in range(3)]), whole[step][key])


def test_augment_batch_is_flip_and_shifted_crop():
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, size=(64, 16, 16, 1), dtype=np.uint8)  # no zero pixels
  out = input_pipeline.augment_batch(images, np.random.default_rng(5))
  pad = input_pipeline.crop_padding_for(16, 16)
  assert pad == 2 and out.shape == images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  n_flipped = n_shifted = 0
  for i in range(64):
    matches = [(dy, dx, flip) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
               for flip in (False, True)
               if np.array_equal(out[i], (lambda c: c[:, ::-1] if flip else c)(
                   padded[i, dy:dy + 16, dx:dx + 16]))]
    assert matches, f"example {i} is not a flipped/unflipped crop of its padded image"
    n_flipped += matches[0][2]
    n_shifted += (matches[0][0], matches[0][1]) != (pad, pad)
  assert 10 < n_flipped < 54 and n_shifted > 32
  again = input_pipeline.augment_batch(images, np.random.default_rng(5))
  np.testing.assert_array_equal(out, again)


def test_strong_augment_crops_resizes_flips_and_jitters_within_its_ranges():
  # A flat grey image stays flat under crop, resize, flip and contrast/saturation about its own
  # grey: only the brightness factor is left, so each output is round(128 * f), f in [0.6, 1.4].
  flat = np.full((200, 12, 10, 3), 128, np.uint8)
  out = input_pipeline.strong_augment_batch(flat, np.random.default_rng(3))
  assert out.shape == flat.shape and out.dtype == np.uint8
  assert all(len(np.unique(o)) == 1 for o in out)
  values = out[:, 0, 0, 0].astype(float) / 128
  jitter = input_pipeline.STRONG_JITTER
  assert values.min() >= 1 - jitter - 0.01 and values.max() <= 1 + jitter + 0.01
  assert values.max() - values.min() > jitter  # drawn, not constant
  # A left-dark / right-bright image: crops from one side keep its order unless flipped; both
  # orders occur (the flip), and many outputs are not the whole image (the resized crop).
  ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8)[None, None, :, None], (300, 40, 1, 3))
  out = input_pipeline.strong_augment_batch(ramp, np.random.default_rng(4)).astype(int)
  rising = (out[:, 20, -1, 0] > out[:, 20, 0, 0]).mean()
  assert 0.3 < rising < 0.7
  spans = np.abs(out[:, 20, -1, 0] - out[:, 20, 0, 0])
  assert (spans < 0.8 * spans.max()).mean() > 0.3
  # Grey input (one channel) works; the same generator state gives the same batch.
  grey = np.random.default_rng(0).integers(0, 256, size=(8, 9, 7, 1), dtype=np.uint8)
  a = input_pipeline.strong_augment_batch(grey, np.random.default_rng(9))
  b = input_pipeline.strong_augment_batch(grey, np.random.default_rng(9))
  assert a.shape == grey.shape
  np.testing.assert_array_equal(a, b)


def test_train_batches_strong_policy_resumes_exactly():
  images, labels = _data(n=24, h=8, w=8)
  kwargs = dict(batch_size=6, seed=2, augment=True, augment_policy="strong", prefetch=0)
  straight = _take(input_pipeline.train_batches(images, labels, **kwargs), 7)
  resumed = _take(input_pipeline.train_batches(images, labels, start_step=4, **kwargs), 3)
  for x, y in zip(straight[4:], resumed):
    np.testing.assert_array_equal(x["image"], y["image"])
  plain = _take(input_pipeline.train_batches(images, labels, batch_size=6, seed=2,
                                             augment=True, prefetch=0), 1)
  assert not np.array_equal(plain[0]["image"], straight[0]["image"])
  with pytest.raises(ValueError, match="augment_policy must be one of .*got 'autoaugment'"):
    input_pipeline.train_batches(images, labels, batch_size=6, seed=2, augment=True,
                                 augment_policy="autoaugment")


def test_train_batches_bad_arguments():
  images, labels = _data()
  with pytest.raises(ValueError, match="batch_size"):
    next(input_pipeline.train_batches(images, labels, batch_size=24, seed=0, process_count=1,
                                process_index=0))
  with pytest.raises(ValueError, match="divisible"):
    next(input_pipeline.train_batches(images, labels, batch_size=5, seed=0, process_count=2,
                                process_index=0))
  with pytest.raises(ValueError, match="process_index"):
    next(input_pipeline.train_batches(images, labels, batch_size=4, seed=0, process_count=2,
                                process_index=2))
  with pytest.raises(ValueError, match="labels"):
    next(input_pipeline.train_batches(images, labels[:-1], batch_size=4, seed=0))
  # Defaults come from jax (one process here).
  batch = next(input_pipeline.train_batches(images, labels, batch_size=4, seed=0))
  assert batch["label"].shape == (4,)


def test_eval_batches_in_order_with_padding_mask():
  images, labels = _data(n=10)
  batches = list(input_pipeline.eval_batches(images, labels, batch_size=4))
  assert len(batches) == 3
  assert all(b["image"].shape == (4, 6, 5, 3) for b in batches)
  np.testing.assert_array_equal(batches[-1]["mask"], [True, True, False, False])
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[mask], labels)
  np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches])[mask],
                                input_pipeline.normalize(images))
  assert np.all(batches[-1]["image"][2:] == -1.0)


def test_eval_batches_process_slices_cover_every_example_once():
  images, labels = _data(n=10)
  whole = list(input_pipeline.eval_batches(images, labels, batch_size=4, process_index=0,
                                     process_count=1))
  parts = [list(input_pipeline.eval_batches(images, labels, batch_size=4, process_index=p,
                                      process_count=2)) for p in range(2)]
  assert [len(p) for p in parts] == [3, 3]
  for step in range(3):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), whole[step][key])
  with pytest.raises(ValueError, match="divisible"):
    next(input_pipeline.eval_batches(images, labels, batch_size=3, process_index=0, process_count=2))
