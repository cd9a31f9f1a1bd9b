"""The grain training iterator's state saved with the model by orbax, and restored exactly."""

import json

import jax
import numpy as np
import optax
import pytest

from cbir_jax.data import input_pipeline
from cbir_jax.models import registry
from cbir_jax.train import checkpoint as checkpoint_lib
from cbir_jax.train import state as state_lib


def _state(step: int):
  model = registry.get_model("lenet_l", num_classes=3, lk_features=4)
  state = state_lib.create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(0),
                                       (1, 16, 16, 1))
  return state.replace(step=step)


def _batches(**kw):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (23, 16, 16, 1), dtype=np.uint8)
  return input_pipeline.train_batches(images, np.arange(23) % 3, batch_size=4, seed=5,
                                      augment=True, process_index=0, process_count=1, **kw)


def test_iterator_state_saved_with_the_model_resumes_exactly(tmp_path):
  reference = _batches()
  want = [next(reference) for _ in range(12)]  # Crosses the epoch boundary at step 5.
  running = _batches()
  for _ in range(7):
    next(running)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(_state(7), {"model": "lenet_l"}, data_iterator=running)
  next(running)  # Moves on while the save may still be in flight: the state saved is step 7's.
  ckpt.close()
  saved = json.loads((tmp_path / "ckpt" / "7" / "data" / "process_0-of-1.json").read_text())
  assert saved["next_index"] == 7
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ckpt"), read_only=True)
  assert ckpt.has_data()
  restored = ckpt.restore_data(_batches())
  ckpt.close()
  assert input_pipeline.batch_position(restored) == 7
  for step in range(7, 12):
    got = next(restored)
    np.testing.assert_array_equal(got["image"], want[step]["image"])
    np.testing.assert_array_equal(got["label"], want[step]["label"])
  restored.close()


def test_checkpoint_without_data_item(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ckpt"), async_save=False)
  ckpt.save(_state(3), {"model": "lenet_l"})
  assert not ckpt.has_data(3)
  with pytest.raises(FileNotFoundError, match="holds no data iterator state"):
    ckpt.restore_data(_batches(), 3)
  ckpt.close()
