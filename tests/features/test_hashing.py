"""MeanThresholdHasher: both threshold modes, packing, polarity invariance, state, errors."""

import numpy as np
import pytest

from cbir_jax.features import MeanThresholdHasher, rank_features
from cbir_jax.features import igr


def _unpack(codes, nbits):
  """Independent unpacking: bit j is bit j % 32 of word j // 32."""
  return np.array([[(int(row[j // 32]) >> (j % 32)) & 1 for j in range(nbits)] for row in codes],
                  bool)


def _hamming(a, b):
  """(q, n) Hamming distances between bool bit rows."""
  return (a[:, None, :] != b[None, :, :]).sum(-1)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return rng.normal(size=(40, 37)).astype(np.float32), rng.normal(size=(6, 37)).astype(np.float32)


def test_dimension_mode(data):
  db, q = data
  hasher = MeanThresholdHasher().fit(db)
  codes = hasher.transform(q)
  assert codes.shape == (6, 2) and codes.dtype == np.uint32
  expected = q.astype(np.float64) > db.astype(np.float64).mean(0)
  np.testing.assert_array_equal(_unpack(codes, 37), expected)
  assert np.all(codes[:, 1] >> 5 == 0)  # padding bits 37..63 are zero
  np.testing.assert_allclose(hasher.theta, db.astype(np.float64).mean(0), rtol=1e-12)


def test_vector_mode(data):
  db, q = data
  codes = MeanThresholdHasher("vector").fit(db).transform(q)
  expected = q > q.astype(np.float64).mean(1, keepdims=True)
  np.testing.assert_array_equal(_unpack(codes, 37), expected)


def test_igr_default_split_is_the_hash_bit(data):
  db, _ = data
  labels = np.arange(40) % 3
  bits = MeanThresholdHasher().fit(db).bits(db).astype(np.float64)
  np.testing.assert_allclose(igr.information_gain_rate(db, labels),
                             igr.information_gain_rate(bits, labels, thresholds=np.full(37, .5)))


@pytest.mark.parametrize("mode", ["dimension", "vector"])
def test_flipped_polarity_gives_identical_rankings(data, mode):
  db, q = data
  hasher = MeanThresholdHasher(mode).fit(db)
  db_bits, q_bits = hasher.bits(db), hasher.bits(q)
  dist = _hamming(q_bits, db_bits)
  flipped = _hamming(~q_bits, ~db_bits)  # formula (7): theta > value -> 1 (ties aside)
  np.testing.assert_array_equal(dist, flipped)
  np.testing.assert_array_equal(np.argsort(dist, 1, kind="stable"),
                                np.argsort(flipped, 1, kind="stable"))
  # Same for the packed codes: the Hamming distance of the packed words equals the bit one.
  db_codes, q_codes = hasher.transform(db), hasher.transform(q)
  packed = np.array([[sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(x, y))
                      for y in db_codes] for x in q_codes])
  np.testing.assert_array_equal(packed, dist)


def test_state_roundtrip(data, tmp_path):
  db, q = data
  for mode in ("dimension", "vector"):
    hasher = MeanThresholdHasher(mode).fit(db)
    np.savez(tmp_path / "h.npz", **hasher.state())
    with np.load(tmp_path / "h.npz") as f:
      again = MeanThresholdHasher.from_state(dict(f))
    np.testing.assert_array_equal(again.transform(q), hasher.transform(q))


def test_errors(data):
  db, q = data
  with pytest.raises(ValueError, match="threshold"):
    MeanThresholdHasher("median")
  with pytest.raises(ValueError, match="not fitted"):
    MeanThresholdHasher().transform(q)
  hasher = MeanThresholdHasher().fit(db)
  with pytest.raises(ValueError, match="37 columns"):
    hasher.transform(q[:, :5])
  bad = q.copy()
  bad[4, 30] = np.inf
  with pytest.raises(ValueError, match="row 4, column 30"):
    hasher.transform(bad)
  bad_db = db.copy()
  bad_db[1, 2] = np.nan
  with pytest.raises(ValueError, match="row 1, column 2"):
    MeanThresholdHasher().fit(bad_db)


def test_rank_then_hash_pipeline(data):
  db, q = data
  labels = (db[:, 11] > 0).astype(int)
  order = rank_features(db, labels)
  assert order[0] == 11
  hasher = MeanThresholdHasher().fit(igr.select(db, order, 16))
  assert hasher.transform(igr.select(q, order, 16)).shape == (6, 1)
