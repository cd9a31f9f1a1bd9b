"""The provenance record: round trip, what query-by-image needs, legacy demo metadata."""

import json

import pytest

from cbir_jax.features import provenance


def _record(**kw):
  return provenance.Provenance([provenance.Source("lenet_l", "f6", train_workdir="/r", **kw)],
                               dataset={"name": "digits", "split": "train"})


def test_round_trip_and_missing():
  record = _record(checkpoint_step=5)
  again = provenance.Provenance.from_dict(json.loads(json.dumps(record.to_dict())))
  assert again == record
  assert record.missing_for_image_search(binary=False) == []
  assert "hash encoder" in record.missing_for_image_search(binary=True)[0]
  assert record.with_encoder({"x": 1}).missing_for_image_search(binary=True) == []
  bare = provenance.Provenance([provenance.Source("lenet_l", "f6")])
  missing = " ".join(bare.missing_for_image_search(binary=False))
  assert "train_workdir or a weights file" in missing and "data set" in missing
  fused = provenance.Provenance([provenance.Source("a", "x", train_workdir="/a"),
                                 provenance.Source("b", "y", train_workdir="/b")],
                                dataset={"name": "corel1k"})
  assert "fused" in fused.missing_for_image_search(binary=False)[0]


def test_from_metadata_reads_current_legacy_and_none():
  record = _record()
  assert provenance.from_metadata({"provenance": record.to_dict()}) == record
  legacy = provenance.from_metadata({"train_workdir": "/r", "endpoint": "f6", "model": "lenet_l",
                                     "dataset": {"name": "digits"}, "feature_order": [1, 0],
                                     "hasher": {"threshold": "dimension"}})
  assert legacy.sources[0].train_workdir == "/r"
  assert legacy.encoder["legacy_feature_order"] == [1, 0]
  assert provenance.from_metadata({"labels": [0, 1]}) is None


def test_bad_records_are_clear_errors():
  with pytest.raises(ValueError, match="not a provenance record"):
    provenance.Provenance.from_dict({"format": "other"})
  with pytest.raises(ValueError, match="version 7 is not supported"):
    provenance.Provenance.from_dict(dict(_record().to_dict(), version=7))
  with pytest.raises(ValueError, match="unknown fields"):
    provenance.Provenance.from_dict(dict(_record().to_dict(), sources=[{"model": "m",
                                                                         "endpoint": "e",
                                                                         "colour": 1}]))
