"""Fixtures for tests/data: tiny generated image folders and the shared real data sets."""

import pathlib

import numpy as np
from PIL import Image
import pytest

from cbir_jax import config_util


def shared_datasets_dir() -> pathlib.Path:
  """../shared/datasets beside the checkout, or $CBIR_SHARED_DATASETS."""
  return config_util.shared_datasets_root()


def pattern(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
  """A smooth uint8[h, w, 3] image (JPEG-friendly) that differs per seed."""
  y, x = np.mgrid[0:h, 0:w]
  base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1),
                   np.full((h, w), (seed * 37) % 256)], axis=-1)
  return np.clip(base, 0, 255).astype(np.uint8)


def write_image(path: pathlib.Path, kind: str, seed: int = 0, size=(16, 16)) -> np.ndarray | None:
  """Writes one test image; returns the RGB pixels it should decode to (None for corrupt).

  kinds: rgb_jpg, rgb_png (lossless: exact pixels), gray_jpg, cmyk_jpg, rgba_png (alpha 0 on the
  left half, so it shows white there), gray16_png, palette_gif, corrupt (garbage bytes),
  truncated (half a JPEG).
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  h, w = size
  rgb = pattern(seed, h, w)
  if kind == "rgb_jpg":
    Image.fromarray(rgb).save(path, "JPEG", quality=95)
  elif kind == "rgb_png":
    Image.fromarray(rgb).save(path, "PNG")
  elif kind == "gray_jpg":
    Image.fromarray(rgb[..., 0]).save(path, "JPEG", quality=95)
    rgb = np.repeat(rgb[..., :1], 3, axis=-1)
  elif kind == "cmyk_jpg":
    Image.fromarray(rgb).convert("CMYK").save(path, "JPEG", quality=95)
  elif kind == "rgba_png":
    alpha = np.where(np.arange(w)[None, :] < w // 2, 0, 255).astype(np.uint8)
    rgba = np.concatenate([rgb, np.broadcast_to(alpha, (h, w))[..., None]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(path, "PNG")
    rgb = np.where(alpha[..., None] == 0, 255, rgb).astype(np.uint8)
  elif kind == "gray16_png":
    gray16 = (rgb[..., 0].astype(np.uint16) * 257)
    Image.fromarray(gray16).save(path, "PNG")  # mode I;16
    rgb = np.repeat(rgb[..., :1], 3, axis=-1)
  elif kind == "palette_gif":
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path, "GIF")
  elif kind == "corrupt":
    path.write_bytes(b"this is not an image at all")
    return None
  elif kind == "truncated":
    buffer = path.with_suffix(".full")
    Image.fromarray(rgb).save(buffer, "JPEG")
    data = buffer.read_bytes()
    buffer.unlink()
    path.write_bytes(data[:len(data) // 2])
    return None
  else:
    raise ValueError(f"unknown kind {kind!r}")
  return rgb


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
  return shared_datasets_dir()
