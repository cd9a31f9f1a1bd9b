"""Bit packing against an independent per-bit loop and FAISS's byte layout."""

import faiss
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.kernels import bits as bits_lib


def _reference_pack(b):
  n, nbits = b.shape
  out = np.zeros((n, -(-nbits // 32)), np.uint32)
  for i in range(n):
    for j in range(nbits):
      if b[i, j]:
        out[i, j // 32] |= np.uint32(1 << (j % 32))
  return out


@pytest.mark.parametrize("nbits", [1, 7, 31, 32, 33, 64, 100, 256])
def test_pack_matches_loop_and_round_trips(nbits, rng):
  b = rng.random((5, nbits)) < 0.5
  codes = bits_lib.pack_bits(b)
  assert isinstance(codes, np.ndarray) and codes.dtype == np.uint32
  np.testing.assert_array_equal(codes, _reference_pack(b))
  np.testing.assert_array_equal(bits_lib.unpack_bits(codes, nbits), b)
  fb = bits_lib.to_faiss_bytes(codes, nbits)
  assert fb.shape == (5, -(-nbits // 8)) and fb.dtype == np.uint8
  np.testing.assert_array_equal(fb, np.packbits(b, axis=1, bitorder="little"))
  np.testing.assert_array_equal(bits_lib.from_faiss_bytes(fb, nbits), codes)


def test_faiss_layout_is_same_memory_on_little_endian(rng):
  codes = rng.integers(0, 2**32, size=(4, 2), dtype=np.uint32)
  fb = bits_lib.to_faiss_bytes(codes, 64)
  if np.little_endian:
    np.testing.assert_array_equal(fb, codes.view(np.uint8))
  # FAISS's own Hamming distance on the bytes equals the popcount of the XORed words.
  ref = [sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(codes[0], codes[i]))
         for i in range(4)]
  index = faiss.IndexBinaryFlat(64)
  index.add(fb)
  dist, idx = index.search(fb[:1], 4)
  np.testing.assert_array_equal(dist[0], np.asarray(ref)[idx[0]])


def test_jax_and_jit(rng):
  b = rng.random((3, 70)) < 0.5
  codes = jax.jit(bits_lib.pack_bits)(jnp.asarray(b))
  assert isinstance(codes, jax.Array) and codes.dtype == jnp.uint32
  np.testing.assert_array_equal(np.asarray(codes), _reference_pack(b))
  unpack = jax.jit(bits_lib.unpack_bits, static_argnames="nbits")
  np.testing.assert_array_equal(np.asarray(unpack(codes, nbits=70)), b)
  fb = jax.jit(bits_lib.to_faiss_bytes, static_argnames="nbits")(codes, nbits=70)
  np.testing.assert_array_equal(np.asarray(fb), np.packbits(b, axis=1, bitorder="little"))
  back = jax.jit(bits_lib.from_faiss_bytes, static_argnames="nbits")(fb, nbits=70)
  np.testing.assert_array_equal(np.asarray(back), np.asarray(codes))


def test_padding_is_zero_and_garbage_masked():
  codes = bits_lib.pack_bits(np.ones((2, 33), bool))
  np.testing.assert_array_equal(codes, [[0xFFFFFFFF, 1]] * 2)
  fb = np.full((1, 2), 0xFF, np.uint8)
  np.testing.assert_array_equal(bits_lib.from_faiss_bytes(fb, 12), [[0xFFF]])
  np.testing.assert_array_equal(bits_lib.to_faiss_bytes(np.array([[0xFFFFFFFF]], np.uint32), 12),
                                [[0xFF, 0x0F]])


def test_errors():
  with pytest.raises(ValueError, match="shape"):
    bits_lib.pack_bits(np.zeros((3, 0), bool))
  with pytest.raises(TypeError, match="uint32"):
    bits_lib.unpack_bits(np.zeros((3, 2), np.int32), 64)
  with pytest.raises(ValueError, match="nbits=20 needs 1"):
    bits_lib.unpack_bits(np.zeros((3, 2), np.uint32), 20)
  with pytest.raises(ValueError, match=r"\[1, 64\].*got 65"):
    bits_lib.to_faiss_bytes(np.zeros((3, 2), np.uint32), 65)
  with pytest.raises(ValueError, match="needs 2 bytes"):
    bits_lib.from_faiss_bytes(np.zeros((3, 3), np.uint8), 16)
