"""scikit-learn's 8x8 handwritten digits as uint8 images: the embedded default data set."""

from __future__ import annotations

import numpy as np


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray, list[str]]:
  """All 1,797 digits of `sklearn.datasets.load_digits`, in the original row order.

  The original values 0..16 are mapped to 0..255 by round(v * 255 / 16).

  Returns:
    (images uint8[1797, 8, 8, 1], labels int32[1797] in 0..9, class_names ["0", ..., "9"]).
    Row i is sklearn's row i, so its stable id is i.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  bunch = load_digits()
  values = np.asarray(bunch.images, dtype=np.float64)
  if values.min() < 0 or values.max() > 16:
    raise ValueError(f"digits values outside 0..16: [{values.min()}, {values.max()}]")
  images = np.round(values * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = np.asarray(bunch.target, dtype=np.int32)
  class_names = [str(int(n)) for n in bunch.target_names]
  return images, labels, class_names
