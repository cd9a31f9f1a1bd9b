"""cbir_jax.features: extraction, AL fusion, information-gain-rate selection, hashing."""

from cbir_jax.features.fuse import fuse
from cbir_jax.features.hashing import MeanThresholdHasher
from cbir_jax.features.igr import FeatureSelector
from cbir_jax.features.igr import information_gain_rate
from cbir_jax.features.igr import rank_features
from cbir_jax.features.igr import select
