"""What the search service accepts: size-checked image bytes, query vectors/codes and k.

Every check raises `BadInput(status, message)`; the service turns it into that HTTP status with
`{"error": message}`. Images are measured from their header (PIL's `Image.open` reads only the
header) before any pixel is decoded, so a 100-megapixel image costs a few bytes of parsing.
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable

import numpy as np
from PIL import Image


class BadInput(ValueError):
  """A request the service refuses: `status` (4xx) and a message for the client."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = int(status)
    self.message = message


def check_image_header(data: bytes, max_pixels: int) -> tuple[int, int, str]:
  """(width, height, format) of encoded image bytes, read from the header only.

  Raises:
    BadInput: 400 for empty or unidentifiable data, 413 for more than `max_pixels` pixels.
  """
  if not data:
    raise BadInput(400, "empty image (0 bytes)")
  try:
    with Image.open(io.BytesIO(data)) as image:  # Header only; pixels are decoded later.
      width, height = image.size
      fmt = image.format or "unknown"
  except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:  # PIL's own cap.
    raise BadInput(413, f"image too large to decode: {e}") from e
  except Exception as e:  # pylint: disable=broad-except  # PIL raises many kinds on junk.
    raise BadInput(400, f"not a readable image ({len(data)} bytes, starting "
                        f"{data[:8]!r}): {e}") from e
  if width * height > max_pixels:
    raise BadInput(413, f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                        f"this service decodes at most {max_pixels / 1e6:g} megapixels")
  return width, height, fmt


def decode_image(data: bytes, decode: Callable[[bytes], np.ndarray], max_pixels: int
                 ) -> np.ndarray:
  """Header check, then `decode(data)` (the searcher's: resized to its image shape).

  Raises:
    BadInput: see `check_image_header`; 400 when decoding fails (truncated or corrupt data).
  """
  width, height, fmt = check_image_header(data, max_pixels)
  try:
    return decode(data)
  except Exception as e:  # pylint: disable=broad-except
    raise BadInput(400, f"cannot decode the {fmt} image ({width}x{height}, {len(data)} bytes): "
                        f"{e}") from e


def parse_k(value: Any, n: int, max_k: int) -> int:
  """k from a query parameter, form field or JSON value: an int in [1, min(n, max_k)]."""
  if isinstance(value, bool):
    raise BadInput(400, f"k must be an integer, got {value!r}")
  if isinstance(value, str):
    try:
      value = int(value.strip())
    except ValueError:
      raise BadInput(400, f"k must be an integer, got {value!r}") from None
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if not isinstance(value, int):
    raise BadInput(400, f"k must be an integer, got {value!r}")
  top = min(n, max_k)
  if not 1 <= value <= top:
    why = f"the index holds {n} images" if top == n else f"this service returns at most {max_k}"
    raise BadInput(400, f"k must be in [1, {top}] ({why}), got {value}")
  return value


def parse_vector(body: dict[str, Any], kind: str, dim: int) -> np.ndarray:
  """The query of a JSON body: `vector` (float index, `dim` floats) or `code` (binary index,
  `dim` uint32 words as integers) -> float32[dim] / uint32[dim]."""
  key, other = ("vector", "code") if kind == "float" else ("code", "vector")
  if key not in body:
    hint = (f"; a {kind} index is searched with '{key}'" if other in body else "")
    raise BadInput(400, f"JSON body needs '{key}' (a list of {dim} "
                        f"{'numbers' if kind == 'float' else 'uint32 words'}){hint}")
  value = body[key]
  if not isinstance(value, list):
    raise BadInput(400, f"'{key}' must be a list of {dim} numbers, got {type(value).__name__}")
  if len(value) != dim:
    raise BadInput(400, f"'{key}' must have {dim} entries for this index, got {len(value)}")
  if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
    bad = next(x for x in value if not isinstance(x, (int, float)) or isinstance(x, bool))
    raise BadInput(400, f"'{key}' must hold only numbers, got {bad!r}")
  if kind == "float":
    if not all(math.isfinite(x) for x in value):
      raise BadInput(400, f"'vector' must be finite, got NaN or infinity at position "
                          f"{next(i for i, x in enumerate(value) if not math.isfinite(x))}")
    out = np.asarray(value, np.float64)
    if np.abs(out).max(initial=0.0) > np.finfo(np.float32).max:
      raise BadInput(400, "'vector' has values beyond float32's range")
    return out.astype(np.float32)
  if not all(isinstance(x, int) and 0 <= x < 2 ** 32 for x in value):
    bad = next(x for x in value if not (isinstance(x, int) and 0 <= x < 2 ** 32))
    raise BadInput(400, f"'code' words must be integers in [0, 2**32), got {bad!r}")
  return np.asarray(value, np.uint32)
