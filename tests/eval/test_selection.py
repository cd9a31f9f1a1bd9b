"""compare_selection vs rankings and average precision computed here with plain NumPy."""

import numpy as np
import pytest

from cbir_jax.eval import selection as compare
from cbir_jax.features import encoder, hashing, igr


def _map(dist, db_labels, q_labels, k=None):
  """Mean AP over the first k of a stable (lower index first) ranking; Z = min(relevant, k)."""
  aps = []
  for row, label in zip(dist, q_labels):
    ranked = db_labels[np.argsort(row, kind="stable")][:k]
    rel = ranked == label
    hits = np.cumsum(rel)
    z = min(np.sum(db_labels == label), len(ranked))
    aps.append(np.sum(rel * hits / np.arange(1, len(ranked) + 1)) / z if z else 0.0)
  return float(np.mean(aps))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=150)
  x = rng.normal(size=(150, 24)).astype(np.float32)
  x[:, 5] += 2.0 * labels
  x[:, 17] -= 1.5 * labels
  return x[:120], labels[:120], x[120:], labels[120:]


@pytest.fixture(scope="module")
def rows(data):
  db, db_labels, q, q_labels = data
  return compare.compare_selection(db, db_labels, q, q_labels, bits=(4, 8, 64), k=60,
                                   paper_k=5, random_trials=2, query_chunk=16)


def test_rows_match_numpy(data, rows):
  db, db_labels, q, q_labels = data
  table = {(r["method"], r["bits"]): r for r in rows}
  assert set(table) == {("full_euclidean", 24)} | {
      (m, b) for m in compare.DEFAULT_METHODS[1:] for b in (4, 8)}  # b = 64 > d is skipped
  l2 = lambda a, b: ((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(-1)
  assert table[("full_euclidean", 24)]["map"] == pytest.approx(
      _map(l2(q, db), db_labels, q_labels, 60), abs=1e-6)
  order = igr.rank_features(db, db_labels)
  assert set(order[:2]) == {5, 17}
  keep = order[:8]
  assert table[("igr_euclidean", 8)]["map"] == pytest.approx(
      _map(l2(q[:, keep], db[:, keep]), db_labels, q_labels, 60), abs=1e-6)
  bits_db = db[:, keep] > db[:, keep].astype(np.float64).mean(0)
  bits_q = q[:, keep] > db[:, keep].astype(np.float64).mean(0)
  hamming = (bits_q[:, None] != bits_db[None]).sum(-1)
  assert table[("igr_hamming", 8)]["map"] == pytest.approx(
      _map(hamming, db_labels, q_labels, 60), abs=1e-9)
  # paper mAP(Top 5): class mean of P@5.
  ranked = db_labels[np.argsort(l2(q, db), 1, kind="stable")[:, :5]]
  p5 = (ranked == q_labels[:, None]).mean(1)
  assert table[("full_euclidean", 24)]["paper_map@5"] == pytest.approx(
      np.mean([p5[q_labels == c].mean() for c in np.unique(q_labels)]), abs=1e-9)


def test_igr_beats_random_when_two_dims_carry_the_labels(rows):
  table = {(r["method"], r["bits"]): r["map"] for r in rows}
  assert table[("igr_euclidean", 4)] > table[("random_euclidean", 4)] + 0.05


def test_pca_hamming_uses_database_principal_axes(data, rows):
  db, db_labels, q, q_labels = data
  mean, comps = encoder.pca_components(db)
  variances = ((db - mean) @ comps).var(0)
  assert np.all(np.diff(variances) <= 1e-9)
  hasher = hashing.MeanThresholdHasher().fit((db - mean) @ comps[:, :4])
  bq = hasher.bits((q - mean) @ comps[:, :4])
  bd = hasher.bits((db - mean) @ comps[:, :4])
  expected = _map((bq[:, None] != bd[None]).sum(-1), db_labels, q_labels, 60)
  table = {(r["method"], r["bits"]): r["map"] for r in rows}
  assert table[("pca_hamming", 4)] == pytest.approx(expected, abs=1e-9)


def test_format_table(rows):
  text = compare.format_table(rows)
  assert text.splitlines()[0] == ("| b | igr_euclidean | random_euclidean | igr_hamming | "
                                  "pca_hamming |")
  assert "full_euclidean (all 24 dimensions)" in text


def test_errors(data):
  db, db_labels, q, q_labels = data
  with pytest.raises(ValueError, match="k must be"):
    compare.compare_selection(db, db_labels, q, q_labels, k=0)
  with pytest.raises(ValueError, match="bits"):
    compare.compare_selection(db, db_labels, q, q_labels, bits=(0,))
  with pytest.raises(ValueError, match="features"):
    compare.compare_selection(db, db_labels, q[:, :3], q_labels)


def _hamming_map(db_bits, q_bits, db_labels, q_labels, k):
  return _map((q_bits[:, None] != db_bits[None]).sum(-1), db_labels, q_labels, k)


def test_random_and_redundancy_aware_hamming_match_numpy(data):
  db, db_labels, q, q_labels = data
  rows = compare.compare_selection(db, db_labels, q, q_labels, bits=(3, 6), k=60, paper_k=5,
                                   random_trials=2, seed=7, query_chunk=16,
                                   methods=("random_hamming", "igr_mrmr_hamming"))
  table = {(r["method"], r["bits"]): r for r in rows}
  assert set(table) == {(m, b) for m in ("random_hamming", "igr_mrmr_hamming") for b in (3, 6)}
  mean = db.astype(np.float64).mean(0)
  for b in (3, 6):
    maps = []
    for trial in range(2):  # HashEncoder(selection="random", seed=7 + trial): its permutation.
      dims = np.random.default_rng(7 + trial).permutation(24)[:b]
      maps.append(_hamming_map(db[:, dims] > mean[dims], q[:, dims] > mean[dims], db_labels,
                               q_labels, 60))
    assert table[("random_hamming", b)]["map"] == pytest.approx(np.mean(maps), abs=1e-9)
    assert table[("random_hamming", b)]["map_std"] == pytest.approx(np.std(maps), abs=1e-9)
    dims = igr.redundancy_aware_order(db, igr.information_gain_rate(db, db_labels))[:b]
    assert table[("igr_mrmr_hamming", b)]["map"] == pytest.approx(
        _hamming_map(db[:, dims] > mean[dims], q[:, dims] > mean[dims], db_labels, q_labels, 60),
        abs=1e-9)
  with pytest.raises(ValueError, match="methods"):
    compare.compare_selection(db, db_labels, q, q_labels, methods=("igr_cosine",))
