"""cbir_jax.index: exact FAISS-like FloatIndex / BinaryIndex with atomic, checksummed files."""

from cbir_jax.index.flat import BinaryIndex
from cbir_jax.index.flat import FloatIndex
from cbir_jax.index.flat import load_index
