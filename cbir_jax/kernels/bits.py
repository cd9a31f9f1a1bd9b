"""Bit packing: bool bits <-> uint32 words (LSB first) <-> FAISS uint8 bytes."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

WORD_BITS = 32


def _namespace(x: Any) -> tuple[Any, Any]:
  """Returns (array namespace, array): jax.numpy for jax arrays/tracers, numpy otherwise."""
  if isinstance(x, jax.Array):
    return jnp, x
  return np, np.asarray(x)


def num_words(nbits: int) -> int:
  """Number of uint32 words holding `nbits` bits: ceil(nbits / 32)."""
  return -(-int(nbits) // WORD_BITS)


def _check_nbits(nbits: int, available: int, what: str) -> int:
  if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)):
    raise TypeError(f"nbits must be an int, got {nbits!r}")
  nbits = int(nbits)
  if not 1 <= nbits <= available:
    raise ValueError(f"nbits must be in [1, {available}] for {what}, got {nbits}")
  return nbits


def pack_bits(bits: Any) -> Any:
  """Packs bits into uint32 words, least significant bit first.

  Args:
    bits: (..., b) bool (or integer/float, nonzero means 1), b >= 1. NumPy or jax array.

  Returns:
    (..., ceil(b / 32)) uint32, same array kind as the input (jax under `jit`). Bit j lives in
    word j // 32 at position j % 32; the padding bits of the last word are 0.
  """
  xp, bits = _namespace(bits)
  if bits.ndim < 1 or bits.shape[-1] < 1:
    raise ValueError(f"bits must have shape (..., b) with b >= 1, got shape {bits.shape}")
  b = bits.shape[-1]
  w = num_words(b)
  on = (bits != 0).astype(xp.uint32)
  pad = w * WORD_BITS - b
  if pad:
    on = xp.concatenate([on, xp.zeros(on.shape[:-1] + (pad,), xp.uint32)], axis=-1)
  on = on.reshape(on.shape[:-1] + (w, WORD_BITS))
  shifts = xp.arange(WORD_BITS, dtype=xp.uint32)
  # Each bit occupies a distinct position, so the sum is the bitwise OR.
  return xp.sum(xp.left_shift(on, shifts), axis=-1, dtype=xp.uint32)


def _check_codes(codes: Any, dtype: Any, name: str) -> None:
  if codes.dtype != dtype:
    raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {codes.dtype}")
  if codes.ndim < 1 or codes.shape[-1] < 1:
    raise ValueError(f"{name} must have shape (..., w) with w >= 1, got shape {codes.shape}")


def _check_words(codes: Any, nbits: int) -> tuple[int, int]:
  """(w, nbits) of uint32 codes (..., w) holding `nbits` bits; ValueError when they disagree."""
  _check_codes(codes, np.uint32, "codes")
  w = codes.shape[-1]
  nbits = _check_nbits(nbits, w * WORD_BITS, f"{w} uint32 words")
  if num_words(nbits) != w:
    raise ValueError(f"nbits={nbits} needs {num_words(nbits)} uint32 words, codes have {w}")
  return w, nbits


def unpack_bits(codes: Any, nbits: int) -> Any:
  """Unpacks uint32 words into bits; inverse of `pack_bits`.

  Args:
    codes: (..., w) uint32, bit j in word j // 32 at position j % 32.
    nbits: number of bits to return, ceil(nbits / 32) == w.

  Returns:
    (..., nbits) bool, same array kind as the input.
  """
  xp, codes = _namespace(codes)
  w, nbits = _check_words(codes, nbits)
  shifts = xp.arange(WORD_BITS, dtype=xp.uint32)
  bits = (xp.right_shift(codes[..., None], shifts) & xp.uint32(1)) != 0
  return bits.reshape(codes.shape[:-1] + (w * WORD_BITS,))[..., :nbits]


def _last_mask(nbits: int, width: int) -> int:
  """Mask of the valid bits in the last element of `width` bits when holding `nbits` bits."""
  rem = nbits % width
  return (1 << width) - 1 if rem == 0 else (1 << rem) - 1


def to_faiss_bytes(codes: Any, nbits: int) -> Any:
  """Converts uint32 words to FAISS's packed bytes (IndexBinaryFlat, knn_hamming).

  FAISS stores bit j in byte j // 8 at position j % 8, so on a little-endian host the two layouts
  are the same memory; this conversion uses shifts and is endian-independent.

  Args:
    codes: (..., w) uint32 from `pack_bits`.
    nbits: number of valid bits, ceil(nbits / 32) == w.

  Returns:
    (..., ceil(nbits / 8)) uint8, same array kind as the input; bits at or beyond nbits are 0.
  """
  xp, codes = _namespace(codes)
  w, nbits = _check_words(codes, nbits)
  nbytes = -(-nbits // 8)
  shifts = xp.arange(0, WORD_BITS, 8, dtype=xp.uint32)
  out = (xp.right_shift(codes[..., None], shifts) & xp.uint32(0xFF)).astype(xp.uint8)
  out = out.reshape(codes.shape[:-1] + (w * 4,))[..., :nbytes]
  mask = _last_mask(nbits, 8)
  if mask != 0xFF:
    last = out[..., -1:] & xp.uint8(mask)
    out = xp.concatenate([out[..., :-1], last], axis=-1)
  return out


def from_faiss_bytes(codes: Any, nbits: int | None = None) -> Any:
  """Converts FAISS's packed bytes to uint32 words; inverse of `to_faiss_bytes`.

  Args:
    codes: (..., nb) uint8, bit j in byte j // 8 at position j % 8.
    nbits: number of valid bits, ceil(nbits / 8) == nb; default 8 * nb.

  Returns:
    (..., ceil(nbits / 32)) uint32, same array kind as the input; bits at or beyond nbits are 0.
  """
  xp, codes = _namespace(codes)
  _check_codes(codes, np.uint8, "codes")
  nb = codes.shape[-1]
  nbits = 8 * nb if nbits is None else _check_nbits(nbits, 8 * nb, f"{nb} bytes")
  if -(-nbits // 8) != nb:
    raise ValueError(f"nbits={nbits} needs {-(-nbits // 8)} bytes, codes have {nb}")
  w = num_words(nbits)
  wide = codes.astype(xp.uint32)
  pad = 4 * w - nb
  if pad:
    wide = xp.concatenate([wide, xp.zeros(wide.shape[:-1] + (pad,), xp.uint32)], axis=-1)
  wide = wide.reshape(codes.shape[:-1] + (w, 4))
  shifts = xp.arange(0, WORD_BITS, 8, dtype=xp.uint32)
  out = xp.sum(xp.left_shift(wide, shifts), axis=-1, dtype=xp.uint32)
  mask = _last_mask(nbits, WORD_BITS)
  if mask != 0xFFFFFFFF:
    last = out[..., -1:] & xp.uint32(mask)
    out = xp.concatenate([out[..., :-1], last], axis=-1)
  return out
