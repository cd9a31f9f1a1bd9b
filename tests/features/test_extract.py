"""extract: equal to a direct model.apply, padded last batch, iterables, atomic .npy + JSON."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from cbir_jax.data import input_pipeline
from cbir_jax.features import extract as extract_lib
from cbir_jax.models import registry


@pytest.fixture(scope="module")
def setup():
  model = registry.get_model("lenet_l", num_classes=3, lk_features=8)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(10, 16, 16, 1), dtype=np.uint8)
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32))
  _, values = model.apply(variables, input_pipeline.normalize(images), train=False, features=("f6",))
  return model, variables, images, np.asarray(values["f6"])


def test_matches_direct_apply_with_padded_last_batch(setup):
  model, variables, images, expected = setup
  got = extract_lib.extract(model, variables, images, "f6", batch_size=4)  # 4 + 4 + 2 (padded)
  assert got.shape == (10, 84) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_iterable_of_uneven_blocks(setup):
  model, variables, images, expected = setup
  blocks = iter([images[:3], images[3:4], images[4:10]])
  got = extract_lib.extract(model, variables, blocks, "f6", batch_size=4)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_streams_to_npy_with_sidecars(setup, tmp_path):
  model, variables, images, expected = setup
  out = tmp_path / "db.npy"
  labels, ids = np.arange(10) % 3, np.arange(100, 110)
  got = extract_lib.extract(model, variables, (b for b in np.split(images, 5)), "f6",
                            batch_size=4, out=out, num_examples=10,
                            metadata={"dataset": "digits", "checkpoint_step": 7},
                            labels=labels, ids=ids)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert sorted(os.listdir(tmp_path)) == ["db.ids.npy", "db.json", "db.labels.npy", "db.npy"]
  loaded = extract_lib.load_features(out)
  np.testing.assert_array_equal(loaded.features, got)
  np.testing.assert_array_equal(loaded.labels, labels)
  np.testing.assert_array_equal(loaded.ids, ids)
  meta = json.loads((tmp_path / "db.json").read_text())
  assert meta["shape"] == [10, 84] and meta["dtype"] == "float32"
  assert meta["endpoint"] == "f6" and meta["model"] == "LeNetL"
  assert meta["dataset"] == "digits" and meta["checkpoint_step"] == 7
  assert "normalize" in meta["preprocessing"]


def test_failure_leaves_nothing(setup, tmp_path):
  model, variables, images, _ = setup

  def broken():
    yield images[:4]
    yield images[4:8]
    raise RuntimeError("reader died")

  with pytest.raises(RuntimeError, match="reader died"):
    extract_lib.extract(model, variables, broken(), "f6", batch_size=4, out=tmp_path / "x.npy",
                        num_examples=10)
  with pytest.raises(ValueError, match="expected num_examples=12"):
    extract_lib.extract(model, variables, iter([images]), "f6", batch_size=4,
                        out=tmp_path / "y.npy", num_examples=12)
  with pytest.raises(ValueError, match="more than num_examples=8"):
    extract_lib.extract(model, variables, iter([images]), "f6", batch_size=4,
                        out=tmp_path / "z.npy", num_examples=8)
  assert os.listdir(tmp_path) == []


def test_errors(setup, tmp_path):
  model, variables, images, _ = setup
  with pytest.raises(ValueError, match=r"valid endpoints: \['lk', 'c5', 'f6'\]"):
    extract_lib.extract(model, variables, images, "fc7", batch_size=4)
  with pytest.raises(ValueError, match="uint8"):
    extract_lib.extract(model, variables, images.astype(np.float32), "f6", batch_size=4)
  with pytest.raises(ValueError, match="batch_size"):
    extract_lib.extract(model, variables, images, "f6", batch_size=0)
  with pytest.raises(ValueError, match="num_examples is required"):
    extract_lib.extract(model, variables, iter([images]), "f6", batch_size=4,
                        out=tmp_path / "z.npy")
  with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
    extract_lib.extract(model, variables, images, "f6", batch_size=4, out=tmp_path / "l.npy",
                        labels=np.zeros(9, int))
  with pytest.raises(ValueError, match=".npy"):
    extract_lib.extract(model, variables, images, "f6", batch_size=4, out=tmp_path / "l.bin")
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="all images must have shape"):
    extract_lib.extract(model, variables, iter([images, images[:, :15]]), "f6", batch_size=4)


@pytest.mark.slow  # a subprocess with 4 simulated devices
def test_sharded_over_four_devices_matches_one():
  """Runs in a subprocess: XLA_FLAGS must be set before jax starts."""
  code = textwrap.dedent("""
      import jax, numpy as np
      from cbir_jax.features.extract import extract
      from cbir_jax.models import registry
      assert len(jax.local_devices()) == 4
      model = registry.get_model("lenet_l", num_classes=3, lk_features=8)
      images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 1), dtype=np.uint8)
      variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32))
      sharded = extract(model, variables, images, "c5", batch_size=8)
      # The forward pass runs on all 4 devices when the batch is sharded as extract shards it.
      from cbir_jax.features.extract import _forward
      mesh = jax.sharding.Mesh(np.asarray(jax.local_devices()), ("data",))
      batch = jax.device_put(images[:8], jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec("data")))
      out = _forward(variables, batch, model=model, endpoint="c5")
      assert len(out.sharding.device_set) == 4, out.sharding
      one = jax.sharding.Mesh(np.asarray(jax.local_devices()[:1]), ("data",))
      single = extract(model, variables, images, "c5", batch_size=8, mesh=one)
      np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
      try:
        extract(model, variables, images, "c5", batch_size=6)
        raise SystemExit("no error for batch_size=6 on 4 devices")
      except ValueError as e:
        assert "multiple of the number of devices (4)" in str(e), e
      print("OK", sharded.shape)
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "OK (10, 120)" in result.stdout
