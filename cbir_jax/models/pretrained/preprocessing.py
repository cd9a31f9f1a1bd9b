"""The input preprocessing that goes with a set of imported weights (JSON-serialisable)."""

import dataclasses
import json
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """uint8 images -> the float32 input a set of imported weights expects.

  `apply(images)`: `images: uint8[..., h, w, 3]` (RGB) -> `f32[..., h, w, 3]` computed as
  `(x[..., channels] * scale - mean) / std` with `channels` (0, 1, 2) for RGB or (2, 1, 0) for
  BGR. jit-able; `to_json()` / `from_json()` round-trip it exactly.

  Attributes:
    name: "torchvision" (ImageNet mean/std on [0, 1] RGB), "caffe" (BGR, ImageNet mean
      subtracted on [0, 255]; Keras ResNet50) or "inception" ([-1, 1]; Keras InceptionV3 and
      MobileNetV2, and torchvision's inception_v3 whose published weights run with
      transform_input=True, i.e. on [-1, 1]).
    channel_order: "RGB" or "BGR" (the order of the network's input channels).
    scale, mean, std: as above; mean and std in network channel order.
  """

  name: str
  channel_order: str
  scale: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  def __post_init__(self):
    if self.channel_order not in ("RGB", "BGR"):
      raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
    if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
      raise ValueError(f"mean and std need 3 entries, std > 0; got {self.mean}, {self.std}")

  def apply(self, images: jax.Array | np.ndarray) -> jax.Array:
    """`uint8[..., 3]` RGB -> `f32[..., 3]` network input (see the class docstring)."""
    if images.dtype != np.uint8 or images.shape[-1] != 3:
      raise ValueError(f"images must be uint8 [..., 3] RGB, got {images.dtype} {images.shape}")
    x = jnp.asarray(images, jnp.float32)
    if self.channel_order == "BGR":
      x = x[..., ::-1]
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)
    return (x * jnp.float32(self.scale) - mean) / std

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str | Mapping) -> "Preprocessing":
    d = json.loads(text) if isinstance(text, str) else dict(text)
    return cls(name=d["name"], channel_order=d["channel_order"], scale=float(d["scale"]),
               mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]))


TORCHVISION = Preprocessing("torchvision", "RGB", 1 / 255, (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225))
CAFFE = Preprocessing("caffe", "BGR", 1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
INCEPTION = Preprocessing("inception", "RGB", 1.0, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
