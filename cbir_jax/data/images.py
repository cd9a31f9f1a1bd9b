"""Image decoding to RGB uint8 and resizing, shared by the data-set builders and load_arrays."""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from PIL import Image

# Extensions (lower case) that the folder builders treat as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")


def is_image_file(path: str | os.PathLike) -> bool:
  """True when the file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
  return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> np.ndarray:
  """Converts a PIL image of any common mode to RGB.

  Handles: RGB (as is), L / 1 / P (grey or palette -> RGB), CMYK and YCbCr (PIL's
  conversion), RGBA / LA / PA and palette-with-transparency (alpha-composited over white),
  16-bit grey `I;16*` and 32-bit `I` (scaled by 255/65535, i.e. treated as 16-bit data) and float
  `F` (clipped to [0, 255]).

  Args:
    image: an opened PIL image.

  Returns:
    uint8[h, w, 3].
  """
  mode = image.mode
  if mode.startswith("I;16") or mode == "I":
    x = np.asarray(image, dtype=np.float64)
    x = np.clip(np.round(x * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return np.repeat(x[..., None], 3, axis=-1)
  if mode == "F":
    x = np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
    return np.repeat(x[..., None], 3, axis=-1)
  if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and
                                                     "transparency" in image.info):
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
  if mode != "RGB":
    image = image.convert("RGB")
  return np.asarray(image, dtype=np.uint8)


def decode_rgb(data: bytes) -> np.ndarray:
  """Decodes encoded image bytes (any PIL format) to uint8[h, w, 3]; raises on bad data.

  Raises:
    OSError, ValueError, SyntaxError (PIL's errors) when the bytes are not a readable image,
    including truncated files (decoding is forced with `load()`).
  """
  with Image.open(io.BytesIO(data)) as image:
    image.load()
    return to_rgb(image)


def parse_image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
  """Normalises `image_size` (int s -> (s, s); (h, w) -> (h, w); None -> None)."""
  if image_size is None:
    return None
  if isinstance(image_size, (int, np.integer)):
    size = (int(image_size), int(image_size))
  else:
    size = tuple(int(s) for s in image_size)
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
  return size


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of the whole image (no crop, aspect ratio not kept).

  Args:
    image: uint8[h, w, c] with c in {1, 3}.
    size: (height, width) of the output.

  Returns:
    uint8[height, width, c]; the input itself when it already has that size.
  """
  height, width = size
  if image.shape[:2] == (height, width):
    return image
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"image must be [h, w, 1|3], got shape {image.shape}")
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
  return out[..., None] if image.shape[-1] == 1 else out


def resize_all(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`resize` applied to uint8[n, h, w, c] -> uint8[n, height, width, c]."""
  if images.shape[1:3] == tuple(size):
    return images
  out = np.empty((images.shape[0], size[0], size[1], images.shape[3]), np.uint8)
  for i, image in enumerate(images):
    out[i] = resize(image, size)
  return out


def load_for_tfds(path: str | os.PathLike) -> bytes | np.ndarray:
  """Reads one image file for a tfds `Image` feature, fully decoding it to validate it.

  8-bit RGB JPEGs are returned as their original bytes (no re-encoding, pixels unchanged);
  any other readable image (PNG, CMYK or greyscale JPEG, RGBA, 16-bit, palette, ...) is decoded
  and converted with `to_rgb`.

  Args:
    path: the image file.

  Returns:
    The file's bytes, or uint8[h, w, 3].

  Raises:
    OSError, ValueError, SyntaxError, Image.DecompressionBombError: unreadable or corrupt file.
  """
  with open(path, "rb") as f:
    data = f.read()
  with Image.open(io.BytesIO(data)) as image:
    image.load()
    if image.format == "JPEG" and image.mode == "RGB":
      return data
    return to_rgb(image)


def image_shape(image: bytes | np.ndarray) -> tuple[int, int, int]:
  """(h, w, c) of what `load_for_tfds` returned."""
  if isinstance(image, np.ndarray):
    return tuple(image.shape)
  with Image.open(io.BytesIO(image)) as pil:
    return (pil.height, pil.width, len(pil.getbands()))
