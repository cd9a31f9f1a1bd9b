"""Information gain rate vs an independent float64 loop implementation and hand-made cases."""

import math

import numpy as np
import pytest

from cbir_jax.features import igr


def _entropy(groups):
  """-sum p log2 p over the sizes in `groups` (a list of counts)."""
  total = sum(groups)
  return -sum(c / total * math.log2(c / total) for c in groups if c > 0)


def _reference_rate(column, labels, edges):
  """Formulas (1)-(5) with plain loops: bin = number of edges strictly below the value."""
  n = len(column)
  bins = [sum(1 for e in edges if v > e) for v in column]
  classes = sorted(set(labels.tolist()))
  h_d = _entropy([int(np.sum(labels == c)) for c in classes])
  h_cond = 0.0
  sizes = []
  for b in sorted(set(bins)):
    members = [labels[i] for i in range(n) if bins[i] == b]
    sizes.append(len(members))
    h_cond += len(members) / n * _entropy([members.count(c) for c in classes])
  h_split = _entropy(sizes)
  return 0.0 if h_split == 0 else (h_d - h_cond) / h_split


@pytest.mark.parametrize("bins", [2, 3, 5])
def test_matches_reference(bins):
  rng = np.random.default_rng(0)
  n, d = 97, 9
  labels = rng.integers(0, 4, size=n)
  x = rng.normal(size=(n, d)).astype(np.float32)
  x[:, 1] += labels  # informative
  x[:, 2] = np.round(x[:, 2])  # many ties
  got = igr.information_gain_rate(x, labels, bins=bins, chunk_dims=4)
  x64 = x.astype(np.float64)
  for j in range(d):
    col = x64[:, j]
    edges = ([col.sum() / n] if bins == 2 else
             [np.quantile(col, k / bins) for k in range(1, bins)])
    assert got[j] == pytest.approx(_reference_rate(col, labels, edges), abs=1e-12)
  assert got.dtype == np.float64 and got.shape == (d,)
  np.testing.assert_array_equal(
      got, igr.information_gain_rate(x, labels, bins=bins))  # chunking does not matter


def test_hand_made_ranking():
  labels = np.repeat(np.array([3, 7]), 50)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(100, 5))
  x[:, 3] = labels          # equal to the (binary) label: perfect split
  x[:, 1] = 2.5             # constant
  x[:, 4] = labels + rng.normal(scale=2.0, size=100)
  rates = igr.information_gain_rate(x, labels)
  assert rates[3] == pytest.approx(1.0)
  assert rates[1] == 0.0
  order = igr.rank_features(x, labels)
  assert order[0] == 3 and order[-1] == 1
  assert sorted(order.tolist()) == list(range(5)) and order.dtype == np.int64


def test_ties_go_to_lower_index_and_custom_thresholds():
  labels = np.array([0, 0, 1, 1])
  x = np.array([[0, 5, 0], [0, 5, 0], [1, 5, 1], [1, 5, 1]], np.float64)
  np.testing.assert_array_equal(igr.rank_features(x, labels), [0, 2, 1])
  # A threshold above every value leaves one bin: rate 0.
  rates = igr.information_gain_rate(x, labels, thresholds=[9.0, 0.0, 0.5])
  np.testing.assert_allclose(rates, [0.0, 0.0, 1.0])


def test_select_and_selector_roundtrip():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 3, size=60)
  x = rng.normal(size=(60, 20)).astype(np.float32)
  x[:, 7] += 3 * labels
  sel = igr.FeatureSelector(4).fit(x, labels)
  assert sel.indices[0] == 7
  q = rng.normal(size=(5, 20)).astype(np.float32)
  np.testing.assert_array_equal(sel.transform(q), q[:, sel.indices])
  again = igr.FeatureSelector.from_state({k: np.asarray(v) for k, v in sel.state().items()})
  np.testing.assert_array_equal(again.transform(q), sel.transform(q))
  np.testing.assert_array_equal(igr.select(x, sel.order, 4), x[:, sel.order[:4]])


def test_errors():
  x = np.zeros((4, 3))
  labels = np.array([0, 1, 0, 1])
  for b in (0, 4, 2.0, True):
    with pytest.raises(ValueError, match="b must be"):
      igr.select(x, np.arange(3), b)
  with pytest.raises(ValueError, match="repeat"):
    igr.select(x, np.array([0, 0, 1]), 1)
  bad = x.copy()
  bad[2, 1] = np.nan
  with pytest.raises(ValueError, match="row 2, column 1"):
    igr.information_gain_rate(bad, labels)
  with pytest.raises(ValueError, match="labels"):
    igr.information_gain_rate(x, labels[:3])
  with pytest.raises(ValueError, match="bins"):
    igr.information_gain_rate(x, labels, bins=1)
  with pytest.raises(ValueError, match="not fitted"):
    igr.FeatureSelector(2).transform(x)
  with pytest.raises(ValueError, match="b must be"):
    igr.FeatureSelector(5).fit(x, labels)


def _reference_mrmr(x, rates, penalty):
  """Greedy relevance - penalty * mean |corr| of the mean-threshold bits, with plain loops."""
  bits = (x > x.astype(np.float64).mean(0)).astype(np.float64)
  d = x.shape[1]

  def corr(i, j):
    a, b = bits[:, i] - bits[:, i].mean(), bits[:, j] - bits[:, j].mean()
    denom = math.sqrt((a * a).sum() * (b * b).sum())
    return 0.0 if denom == 0 else abs((a * b).sum() / denom)

  relevance = rates / rates.max()
  chosen = []
  while len(chosen) < d:
    best, best_score = None, -math.inf
    for j in range(d):
      if j in chosen:
        continue
      redundancy = sum(corr(j, s) for s in chosen) / len(chosen) if chosen else 0.0
      score = relevance[j] - penalty * redundancy
      if score > best_score + 1e-12:
        best, best_score = j, score
    chosen.append(best)
  return chosen


def test_redundancy_aware_order_skips_near_duplicates(rng):
  labels = rng.integers(0, 4, 400)
  strong = labels + 0.3 * rng.normal(size=400)
  x = rng.normal(size=(400, 8))
  x[:, 2] = strong
  x[:, 5] = strong + 0.01 * rng.normal(size=400)  # near-duplicates of dimension 2
  x[:, 6] = strong + 0.01 * rng.normal(size=400)
  x[:, 1] = (labels % 2) * 2.0 + 1.0 * rng.normal(size=400)  # weaker, other information
  rates = igr.information_gain_rate(x, labels)
  plain = igr.order_by_rate(rates)
  assert set(plain[:3].tolist()) == {2, 5, 6}  # plain IGR keeps the three copies first
  order = igr.redundancy_aware_order(x, rates, penalty=1.0)
  assert order[0] == plain[0] and order[1] == 1  # the penalty brings the other signal forward
  assert order.tolist() == _reference_mrmr(x, rates, 1.0)
  np.testing.assert_array_equal(igr.redundancy_aware_order(x, rates, penalty=0.0), plain)
  with pytest.raises(ValueError, match="penalty"):
    igr.redundancy_aware_order(x, rates, penalty=-1.0)
  with pytest.raises(ValueError, match="rates"):
    igr.redundancy_aware_order(x, rates[:3])
