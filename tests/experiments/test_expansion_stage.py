"""corel's DBA / alpha-QE stage: names, what each grid point does, and the choice on validation
(query labels never read)."""

import ml_collections
import numpy as np
import pytest

from cbir_jax.eval import protocol
from cbir_jax.experiments import corel
from cbir_jax.kernels import alpha_query_expansion, database_augmentation


def test_names():
  assert corel.expansion_name(0, 0) == "none"
  assert corel.expansion_name(0, 2) == "qe2"
  assert corel.expansion_name(3, 0) == "dba3"
  assert corel.expansion_name(3, 2) == "dba3+qe2"


def test_expand_applies_dba_then_qe_on_unit_rows(rng):
  db = rng.normal(size=(12, 4)).astype(np.float32) * 3
  q = rng.normal(size=(5, 4)).astype(np.float32)
  same_db, same_q = corel.expand(db, q, 0, 0, 3.0)
  assert same_db is db and same_q is q
  # QE only: the database rows become unit vectors (DBA with k = 1), the queries expand on it.
  unit = db / np.linalg.norm(db, axis=1, keepdims=True)
  edb, eq = corel.expand(db, q, 0, 2, 3.0)
  np.testing.assert_allclose(edb, unit, atol=1e-6)
  np.testing.assert_allclose(eq, alpha_query_expansion(q, unit, 2), atol=1e-6)
  edb, eq = corel.expand(db, q, 3, 2, 1.0)
  aug = np.asarray(database_augmentation(db, 3, alpha=1.0))
  np.testing.assert_allclose(edb, aug, atol=1e-6)
  np.testing.assert_allclose(eq, alpha_query_expansion(q, aug, 2, alpha=1.0), atol=1e-6)
  # DBA only: the queries are untouched; k larger than the database is capped.
  edb, eq = corel.expand(db, q, 50, 0, 3.0)
  assert eq is q
  np.testing.assert_allclose(edb, database_augmentation(db, 12), atol=1e-6)


def _clustered(rng, n_per, classes, dim, noise):
  centres = rng.normal(size=(classes, dim)) * 3
  labels = np.repeat(np.arange(classes), n_per)
  return (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32), \
      labels.astype(np.int32)


def test_choice_reads_validation_labels_only(rng):
  db, dblab = _clustered(rng, 20, 4, 8, 2.0)
  val, vlab = _clustered(rng, 3, 4, 8, 2.0)
  queries, qlab = _clustered(rng, 5, 4, 8, 2.0)
  config = ml_collections.ConfigDict({
      "ks": (5,), "fusion": {"name": "AL"},
      "expansion": {"dba_k": (0, 3), "qe_k": (0, 2), "alpha": 3.0}})
  seen = []

  def evaluate(name, database, vectors):
    seen.append(name)
    return protocol.evaluate_search(name, protocol_search(database), vectors, qlab, dblab,
                                    protocol="heldout", ks=(5,))

  def protocol_search(database):
    from cbir_jax.eval import ranking  # pylint: disable=import-outside-toplevel
    from cbir_jax.experiments.stages import float_index  # pylint: disable=import-outside-toplevel
    return ranking.full_ranking_search(float_index(database))

  plain = evaluate("AL", db, queries)
  out = corel._choose_expansion(config, db, val, vlab, dblab, queries, plain, evaluate)  # pylint: disable=protected-access
  assert set(out["validation_scores"]) == {"none", "qe2", "dba3", "dba3+qe2"}
  # The winner is the best validation mAP; recomputing it by hand agrees.
  for name, (a, b) in {"none": (0, 0), "qe2": (0, 2), "dba3": (3, 0),
                       "dba3+qe2": (3, 2)}.items():
    edb, ev = corel.expand(db, val, a, b, 3.0)
    r = protocol.evaluate_search(name, protocol_search(edb), ev, vlab, dblab,
                                 protocol="heldout", ks=(5,))
    assert out["validation_scores"][name] == pytest.approx(r.metrics["map"])
  assert out["validation_scores"][out["choice"]] == max(out["validation_scores"].values())
  assert out["table"]["without"] is plain
  assert corel.expansion_name(*out["k_dba_k_qe"]) == out["choice"]
  # The queries were scored once, with the choice (or not at all when "none" won).
  assert seen == ["AL"] + ([] if out["choice"] == "none" else [f"AL + {out['choice']}"])
  # Sealed query labels cannot stand in for validation labels.
  with pytest.raises(TypeError, match="never on the sealed query set"):
    corel._choose_expansion(config, db, val, protocol.SealedQueries(None, qlab), dblab,  # pylint: disable=protected-access
                            queries, plain, evaluate)
