"""Photo folders for the tests: seeded JPEGs in class folders, optionally with a bad file."""

import numpy as np
from PIL import Image


def make_photos(root, per_class: int, size=(20, 24), seed: int = 0, bad: bool = True):
  """root/c<k>/<i>.jpg for 3 classes of seeded noise around a class colour; with `bad`, an
  unreadable c1/bad.jpg. Returns root."""
  rng = np.random.default_rng(seed)
  for c, color in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 210)]):
    (root / f"c{c}").mkdir(parents=True)
    for i in range(per_class):
      pixels = np.clip(np.array(color) + rng.normal(0, 40, (*size, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(root / f"c{c}" / f"{i:04d}.jpg", quality=90)
  if bad:
    (root / "c1" / "bad.jpg").write_bytes(b"not an image")
  return root
