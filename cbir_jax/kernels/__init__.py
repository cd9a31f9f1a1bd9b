"""cbir_jax.kernels: pure jit-able bit packing, Euclidean and Hamming top-k search, query
expansion and database-side augmentation."""

from cbir_jax.kernels.bits import from_faiss_bytes
from cbir_jax.kernels.bits import pack_bits
from cbir_jax.kernels.bits import to_faiss_bytes
from cbir_jax.kernels.bits import unpack_bits
from cbir_jax.kernels.euclidean import euclidean_distances
from cbir_jax.kernels.euclidean import euclidean_topk
from cbir_jax.kernels.expansion import alpha_query_expansion
from cbir_jax.kernels.expansion import database_augmentation
from cbir_jax.kernels.hamming import hamming_distances
from cbir_jax.kernels.hamming import hamming_topk
from cbir_jax.kernels.sharded import sharded_euclidean_topk
from cbir_jax.kernels.sharded import sharded_hamming_topk
