"""The provenance record: what produced the vectors of a feature file or an index.

Every index the project writes carries one record in its metadata (`"provenance"`), however it
was built (the demo, `bin/reproduce.py`, or the CLI chain extract -> hash -> index build), and so
does the JSON sidecar of every feature or code file. Query-by-image reads it to turn a photo into
a query exactly as the database was turned into vectors:

  sources      one entry per network whose features are used (two for a fused descriptor such
               as AL): registry model name, endpoint, the training workdir and checkpoint step
               or an imported weights file (path, SHA-256, format), and the preprocessing that
               maps uint8 pixels to the network's input (None: the project's own
               `(x / 255 - 0.5) / 0.5`);
  fusion       how several sources are fused (`features.fuse`: normalize, weights), or None;
  dataset      the data set the database came from: name, split, manual_dir, data_dir,
               image_size (the size every query image is resized to), seed;
  encoder      for a binary index: `HashEncoder.state()` (selection + thresholds), else None.

The record is a plain JSON-compatible dict, versioned (`FORMAT`, `VERSION`). Indexes written
before it existed (the demo's `train_workdir`/`endpoint`/`dataset`/`feature_order`/`hasher`
keys) are read through `from_metadata` too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FORMAT = "cbir_jax.provenance"
VERSION = 1


@dataclasses.dataclass
class Source:
  """One network's contribution to the vectors (see the module docstring)."""
  model: str
  endpoint: str
  train_workdir: str | None = None
  checkpoint_step: int | None = None
  weights: dict[str, Any] | None = None
  preprocessing: dict[str, Any] | None = None

  def missing(self) -> list[str]:
    """What query-by-image lacks to rebuild this network: [] when it can."""
    if self.train_workdir is None and self.weights is None:
      return [f"the model of source {self.model}:{self.endpoint} (a train_workdir or a "
              "weights file)"]
    return []


@dataclasses.dataclass
class Provenance:
  """What produced a set of vectors (see the module docstring)."""
  sources: list[Source]
  fusion: dict[str, Any] | None = None
  dataset: dict[str, Any] | None = None
  encoder: dict[str, Any] | None = None

  def to_dict(self) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION,
            "sources": [dataclasses.asdict(s) for s in self.sources],
            "fusion": self.fusion, "dataset": self.dataset, "encoder": self.encoder}

  @classmethod
  def from_dict(cls, record: dict[str, Any]) -> "Provenance":
    if not isinstance(record, dict) or record.get("format") != FORMAT:
      raise ValueError(f"not a provenance record (format {record.get('format')!r} where "
                       f"{FORMAT!r} was expected)" if isinstance(record, dict) else
                       f"a provenance record must be a dict, got {type(record).__name__}")
    if record.get("version") != VERSION:
      raise ValueError(f"provenance version {record.get('version')!r} is not supported (this "
                       f"cbir_jax reads version {VERSION})")
    fields = {f.name for f in dataclasses.fields(Source)}
    sources = []
    for s in record.get("sources") or []:
      unknown = set(s) - fields
      if unknown:
        raise ValueError(f"provenance source has unknown fields {sorted(unknown)}")
      sources.append(Source(**s))
    return cls(sources, record.get("fusion"), record.get("dataset"), record.get("encoder"))

  def with_encoder(self, encoder_state: dict[str, Any]) -> "Provenance":
    return dataclasses.replace(self, encoder=encoder_state)

  def missing_for_image_search(self, binary: bool) -> list[str]:
    """What is missing to search this index with images; [] when nothing is."""
    missing = [] if self.sources else ["the network that produced the vectors (sources)"]
    for source in self.sources:
      missing += source.missing()
    if len(self.sources) > 1 and self.fusion is None:
      missing.append("how the sources are fused (fusion)")
    if not self.dataset or not self.dataset.get("name"):
      missing.append("the data set of the database (dataset: name, image_size)")
    if binary and self.encoder is None:
      missing.append("the hash encoder (selection and thresholds)")
    return missing


def from_metadata(metadata: dict[str, Any]) -> Provenance | None:
  """The provenance record of an index's (or feature file's) metadata; None when it has none.

  Reads the current `"provenance"` key and the demo's keys of indexes written before it
  existed (`train_workdir`, `endpoint`, `model`, `dataset`, `feature_order`, `hasher`).
  """
  if "provenance" in metadata:
    return Provenance.from_dict(metadata["provenance"])
  if "train_workdir" in metadata and "endpoint" in metadata:
    encoder = None
    if "feature_order" in metadata and "hasher" in metadata:
      encoder = {"legacy_feature_order": list(metadata["feature_order"]),
                 "legacy_hasher": metadata["hasher"]}
    return Provenance([Source(metadata.get("model", ""), metadata["endpoint"],
                              train_workdir=metadata["train_workdir"])],
                      dataset=metadata.get("dataset"), encoder=encoder)
  return None
