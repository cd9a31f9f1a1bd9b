"""Weights files the tests write themselves (nothing is downloaded): a torchvision-format AlexNet
state dict as .safetensors, written with NumPy (no torch needed)."""

import numpy as np


def alexnet_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
  """torchvision's alexnet state dict: tensor name -> shape."""
  return {"features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
          "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
          "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
          "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
          "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
          "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
          "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
          "classifier.6.weight": (num_classes, 4096), "classifier.6.bias": (num_classes,)}


def alexnet_state(rng: np.random.Generator, num_classes: int = 1000) -> dict[str, np.ndarray]:
  """Random float32 tensors in torchvision's names and layouts (fan-in scaled)."""
  state = {}
  for name, shape in alexnet_shapes(num_classes).items():
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    state[name] = (rng.normal(size=shape) / np.sqrt(fan_in) if len(shape) > 1
                   else rng.normal(0, 0.1, shape)).astype(np.float32)
  return state


def write_alexnet_safetensors(path, rng: np.random.Generator, num_classes: int = 1000) -> None:
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  save_file(alexnet_state(rng, num_classes), str(path))
