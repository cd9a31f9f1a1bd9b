"""HashEncoder: select + mean-threshold hash, its versioned state, and what it refuses."""

import json

import numpy as np
import pytest

from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import hashing, igr
from cbir_jax.kernels import bits as bits_lib

SEED = 20261128


@pytest.fixture
def data():
  rng = np.random.default_rng(SEED)
  labels = rng.integers(0, 4, 120)
  x = rng.normal(size=(120, 37)).astype(np.float32) + labels[:, None] * np.linspace(0, 1, 37)
  return x.astype(np.float32), labels


def test_igr_encoder_equals_the_manual_chain(data):
  x, labels = data
  enc = encoder_lib.HashEncoder(20).fit(x, labels)
  order = igr.rank_features(x, labels)
  hasher = hashing.MeanThresholdHasher().fit(igr.select(x, order, 20))
  np.testing.assert_array_equal(enc.encode(x), hasher.transform(igr.select(x, order, 20)),
                                err_msg=f"seed {SEED}")
  assert enc.bits == 20 and enc.words == 1 and enc.kept_dimensions.tolist() == order[:20].tolist()
  np.testing.assert_array_equal(bits_lib.unpack_bits(enc.encode(x), 20), enc.bool_bits(x))


@pytest.mark.parametrize("selection", encoder_lib.SELECTIONS)
@pytest.mark.parametrize("threshold", ["dimension", "vector"])
def test_state_round_trips_through_json(data, selection, threshold):
  x, labels = data
  enc = encoder_lib.HashEncoder(33, selection=selection, threshold=threshold, seed=3)
  enc.fit(x, labels)
  again = encoder_lib.HashEncoder.from_state(json.loads(json.dumps(enc.state())))
  np.testing.assert_array_equal(again.encode(x[:9]), enc.encode(x[:9]), err_msg=f"seed {SEED}")
  assert again.state() == enc.state()


def test_all_bits_and_precomputed_rates(data):
  x, labels = data
  enc = encoder_lib.HashEncoder(-1).fit(x, labels)
  assert enc.bits == 37 and enc.words == 2
  rates = igr.information_gain_rate(x, labels)
  same = encoder_lib.HashEncoder(-1).fit(x, labels, rates=rates)
  np.testing.assert_array_equal(same.encode(x), enc.encode(x))


def test_pca_matches_the_projection(data):
  x, labels = data
  enc = encoder_lib.HashEncoder(8, selection="pca").fit(x)
  mean, axes = encoder_lib.pca_components(x)
  projected = (x.astype(np.float64) - mean) @ axes[:, :8]
  expected = hashing.MeanThresholdHasher().fit(projected).transform(projected)
  np.testing.assert_array_equal(enc.encode(x), expected)


def test_legacy_metadata_rebuilds_the_same_encoder(data):
  x, labels = data
  enc = encoder_lib.HashEncoder(12).fit(x, labels)
  legacy = encoder_lib.HashEncoder.from_legacy(enc.kept_dimensions.tolist(),
                                               enc.hasher.state(), 37)
  np.testing.assert_array_equal(legacy.encode(x), enc.encode(x))


def test_errors_name_the_value(data):
  x, labels = data
  with pytest.raises(ValueError, match="bits must be -1 .* got 0"):
    encoder_lib.HashEncoder(0)
  with pytest.raises(ValueError, match="selection must be one of"):
    encoder_lib.HashEncoder(4, selection="best")
  with pytest.raises(ValueError, match=r"bits must be in \[1, 37\] .* got 38"):
    encoder_lib.HashEncoder(38).fit(x, labels)
  with pytest.raises(ValueError, match="needs the database labels"):
    encoder_lib.HashEncoder(4).fit(x)
  with pytest.raises(ValueError, match="not fitted"):
    encoder_lib.HashEncoder(4).encode(x)
  enc = encoder_lib.HashEncoder(4).fit(x, labels)
  with pytest.raises(ValueError, match=r"shape \(n, 37\)"):
    enc.encode(x[:, :5])
  bad = x.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="NaN|finite"):
    enc.encode(bad)
  state = enc.state()
  for key, value, match in [("format", "x", "not a HashEncoder state"),
                            ("version", 99, "version 99 is not supported"),
                            ("order", [0, 0] + list(range(2, 37)), "not a permutation")]:
    with pytest.raises(ValueError, match=match):
      encoder_lib.HashEncoder.from_state(dict(state, **{key: value}))
