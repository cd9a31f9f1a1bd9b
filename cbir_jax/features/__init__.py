"""cbir_jax.features: extraction, AL fusion, information-gain-rate selection, hashing.

Modules: `extract` (extract, save_features, load_features), `fuse` (fuse), `igr`
(information_gain_rate, rank_features, select, FeatureSelector), `hashing` (MeanThresholdHasher),
`encoder` (HashEncoder: selection + hashing fitted once, with one saved state) and `provenance`
(the record of what produced a set of vectors).
Functions named like their module (`extract.extract`, `fuse.fuse`) are not re-exported here, so
`from cbir_jax.features import fuse` is always the module.
"""

from cbir_jax.features.hashing import MeanThresholdHasher
from cbir_jax.features.igr import FeatureSelector
from cbir_jax.features.igr import information_gain_rate
from cbir_jax.features.igr import rank_features
from cbir_jax.features.igr import select
