"""Checkpoint files -> NumPy: torch .pth, .safetensors, Keras .h5 / .weights.h5 / .keras."""

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Mapping

import numpy as np

FORMATS = ("torch", "safetensors", "keras")


def file_sha256(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def detect_format(path: str | os.PathLike) -> str:
  """"torch" (.pth, .pt, .bin), "safetensors" or "keras" (.h5, .hdf5, .weights.h5, .keras)."""
  name = os.fspath(path).lower()
  for ext, fmt in ((".pth", "torch"), (".pt", "torch"), (".bin", "torch"),
                   (".safetensors", "safetensors"), (".h5", "keras"), (".hdf5", "keras"),
                   (".keras", "keras")):
    if name.endswith(ext):
      return fmt
  raise ValueError(f"cannot tell the format of {os.fspath(path)!r} from its extension; pass "
                   f"format= one of {FORMATS}")


# ---------------------------------------------------------------------------- reading files


def read_torch(path) -> dict[str, np.ndarray]:
  """A torch state dict (`torch.load(weights_only=True)`; a {"state_dict": ...} wrapper is
  unwrapped) -> {name: array}, floating tensors as float32."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"reading {os.fspath(path)!r} (a torch .pth file) needs PyTorch: pip install "
        f"'cbir_jax[bench]' (or torch), or convert it to .safetensors where torch is installed: "
        f"safetensors.torch.save_file(torch.load(path), 'weights.safetensors')") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"],
                                                                          Mapping):
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise ValueError(f"{os.fspath(path)!r} holds a {type(state).__name__}, not a state dict; "
                     f"save model.state_dict()")
  return {k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()).numpy()
          for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_safetensors(path) -> dict[str, np.ndarray]:
  """A .safetensors file -> {name: array}, read with NumPy (no torch)."""
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {os.fspath(path)!r} needs the safetensors package: pip install "
                      f"'cbir_jax[pretrained]'") from e
  return dict(load_file(os.fspath(path)))


def strip_module_prefix(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
    return {k[len("module."):]: v for k, v in state.items()}
  return state


_KERAS_CLASSES = ("conv2d", "depthwise_conv2d", "batch_normalization", "dense")


def _keras_layer_kind(name: str, roles: dict[str, np.ndarray]) -> str | None:
  if "depthwise_kernel" in roles or ("kernel" in roles and "depthwise" in name.lower()):
    return "depthwise"  # Keras 2 names the variable depthwise_kernel, Keras 3 kernel
  if "moving_mean" in roles:
    return "bn"
  if "kernel" in roles:
    return "conv" if roles["kernel"].ndim == 4 else "dense"
  return None


def _read_keras_legacy(group) -> dict[str, list]:
  """Keras 2 / legacy .h5: layer groups listed in `layer_names` (model.layers order)."""
  out = {k: [] for k in ("conv", "depthwise", "bn", "dense")}
  for raw in group.attrs["layer_names"]:
    name = raw.decode() if isinstance(raw, bytes) else str(raw)
    roles = {}
    for wraw in group[name].attrs.get("weight_names", []):
      wname = wraw.decode() if isinstance(wraw, bytes) else str(wraw)
      role = wname.split("/")[-1].split(":")[0]
      roles[role] = np.asarray(group[name][wname])
    kind = _keras_layer_kind(name, roles) if roles else None
    if kind == "depthwise" and "kernel" in roles:
      roles["depthwise_kernel"] = roles.pop("kernel")
    if kind:
      out[kind].append((name, roles))
  return out


def _read_keras3(group) -> dict[str, list]:
  """Keras 3 .weights.h5: `layers/<class>[_<n>]/vars/<i>`, n numbering model.layers order."""
  vars_by_class = {c: [] for c in _KERAS_CLASSES}
  for name in group["layers"]:
    m = re.fullmatch(r"(conv2d|depthwise_conv2d|batch_normalization|dense)(?:_(\d+))?", name)
    if not m:
      continue
    values = group["layers"][name]["vars"]
    arrays = [np.asarray(values[str(i)]) for i in range(len(values))]
    vars_by_class[m.group(1)].append((int(m.group(2) or 0), name, arrays))
  out = {}
  for cls, kind in zip(_KERAS_CLASSES, ("conv", "depthwise", "bn", "dense")):
    layers = []
    for _, name, arrays in sorted(vars_by_class[cls]):
      if kind == "bn":
        keys = ("gamma", "beta", "moving_mean", "moving_variance")[4 - len(arrays):]
      else:
        keys = ("depthwise_kernel" if kind == "depthwise" else "kernel", "bias")[:len(arrays)]
      layers.append((name, dict(zip(keys, arrays))))
    out[kind] = layers
  return out


def read_keras(path) -> dict[str, list]:
  """-> {"conv"|"depthwise"|"bn"|"dense": [(layer name, {role: array})] in model.layers order}."""
  import h5py  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if zipfile.is_zipfile(path):  # .keras: a zip holding model.weights.h5
    with zipfile.ZipFile(path) as z:
      source = io.BytesIO(z.read("model.weights.h5"))
  else:
    source = path
  with h5py.File(source, "r") as f:
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in group.attrs:
      return _read_keras_legacy(group)
    if "layers" in group:
      return _read_keras3(group)
  raise ValueError(f"{path!r} is not a Keras weights file (no layer_names attribute and no "
                   f"layers/ group)")
