"""Import published ImageNet checkpoints (torchvision .pth/.safetensors, Keras .h5) into our models.

`load_pretrained(path, "resnet50")` reads the file, picks the variant of our model that computes
exactly what the source framework computes (`ResNet(variant="torchvision")` etc.), converts every
tensor (layouts, names, AlexNet's fc6 flatten order) and returns the variables together with the
input preprocessing the weights expect. `merge_pretrained` puts such a trunk into a model with a
different head (DFS-Nets, another class count) and says which parameters came from it.
"""

import dataclasses
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax.models import registry

FORMATS = ("torch", "safetensors", "keras")
MODELS = ("alexnet", "resnet50", "mobilenet_v2", "inception_v3")
# (model, framework) -> our model's keyword fields that match the source exactly.
_VARIANTS = {
    ("alexnet", "torchvision"): {},
    ("resnet50", "torchvision"): {"variant": "torchvision"},
    ("resnet50", "keras"): {"variant": "keras"},
    ("mobilenet_v2", "torchvision"): {},
    ("mobilenet_v2", "keras"): {"variant": "keras"},
    ("inception_v3", "torchvision"): {"variant": "torchvision"},
    ("inception_v3", "keras"): {},
}
# Keras 3 numbers a model's layers of one class in `model.layers` order, which for InceptionV3 is
# topological, not creation order: position i of its conv (and batch-norm) layers is creation
# (= our call) number _KERAS_INCEPTION_ORDER[i]. Legacy .h5 files list layers in the same order.
_KERAS_INCEPTION_ORDER = (
    0, 1, 2, 3, 4, 8, 6, 9, 5, 7, 10, 11, 15, 13, 16, 12, 14, 17, 18, 22, 20, 23, 19, 21, 24, 25,
    27, 28, 26, 29, 34, 35, 31, 36, 32, 37, 30, 33, 38, 39, 44, 45, 41, 46, 42, 47, 40, 43, 48, 49,
    54, 55, 51, 56, 52, 57, 50, 53, 58, 59, 64, 65, 61, 66, 62, 67, 60, 63, 68, 69, 72, 73, 70, 74,
    71, 75, 80, 77, 81, 78, 79, 82, 83, 76, 84, 89, 86, 90, 87, 88, 91, 92, 85, 93)


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
_PREPROCESSING = {("inception_v3", "torchvision"): INCEPTION, ("resnet50", "keras"): CAFFE,
                  ("inception_v3", "keras"): INCEPTION, ("mobilenet_v2", "keras"): INCEPTION}


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """An imported checkpoint: `model.apply(variables, preprocessing.apply(images_uint8))`.

  Attributes:
    model: the unbound Linen module (`registry.get_model(model_name, num_classes=...,
      **model_kwargs)`).
    variables: `{"params": ..., "batch_stats": ...}` (no batch_stats for AlexNet), float32.
    preprocessing: what the weights expect of their input.
    source: `{"file": base name, "sha256": hex digest, "format", "framework", "dropped": [source
      tensors deliberately not imported, e.g. torchvision inception's AuxLogits.*]}`.
    format: "torch", "safetensors" or "keras".
    variant: our model's `variant` field that matches the source ("default" when none differs).
    model_name, model_kwargs, num_classes: how to rebuild `model`.
  """

  model: nn.Module
  variables: dict
  preprocessing: Preprocessing
  source: dict
  format: str
  variant: str
  model_name: str
  model_kwargs: dict
  num_classes: int


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


def _read_torch(path) -> dict[str, np.ndarray]:
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
  return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "numpy")}


def _read_safetensors(path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  return dict(load_file(os.fspath(path)))


def _strip_module_prefix(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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


def _read_keras(path) -> dict[str, list]:
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


# ------------------------------------------------------------- our model's layers, in order


def _trace(model: nn.Module, size: int) -> tuple[list[tuple[tuple[str, ...], str]], Any]:
  """Our conv / depthwise / bn / dense modules in call order, and the variables' shapes."""
  calls = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__":
      if isinstance(module, nn.Conv):
        calls.append((module.path, "depthwise" if module.feature_group_count > 1 else "conv"))
      elif isinstance(module, nn.BatchNorm):
        calls.append((module.path, "bn"))
      elif isinstance(module, nn.Dense):
        calls.append((module.path, "dense"))
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  with nn.intercept_methods(record):
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return calls, shapes


# -------------------------------------------------------------------- torchvision names


def _torch_names(model_name: str, model: nn.Module) -> list[tuple[str, str]]:
  """torchvision module names, each with its kind, in the call order of our module."""
  if model_name == "alexnet":
    return [(f"features.{i}", "conv") for i in (0, 3, 6, 8, 10)] + [
        (f"classifier.{i}", "dense") for i in (1, 4, 6)]
  names = []
  conv_bn = lambda p: names.extend([(f"{p}.conv", "conv"), (f"{p}.bn", "bn")])
  if model_name == "resnet50":
    names += [("conv1", "conv"), ("bn1", "bn")]
    for i, blocks in enumerate(model.stage_sizes):
      for j in range(blocks):
        p = f"layer{i + 1}.{j}"
        for k in (1, 2, 3):
          names += [(f"{p}.conv{k}", "conv"), (f"{p}.bn{k}", "bn")]
        if j == 0:
          names += [(f"{p}.downsample.0", "conv"), (f"{p}.downsample.1", "bn")]
    return names + [("fc", "dense")]
  if model_name == "mobilenet_v2":
    names += [("features.0.0", "conv"), ("features.0.1", "bn")]
    k = 1
    for t, _, n, _ in model.settings:
      for _ in range(n):
        p = f"features.{k}.conv"
        if t == 1:
          names += [(f"{p}.0.0", "depthwise"), (f"{p}.0.1", "bn"), (f"{p}.1", "conv"),
                    (f"{p}.2", "bn")]
        else:
          names += [(f"{p}.0.0", "conv"), (f"{p}.0.1", "bn"), (f"{p}.1.0", "depthwise"),
                    (f"{p}.1.1", "bn"), (f"{p}.2", "conv"), (f"{p}.3", "bn")]
        k += 1
    return names + [(f"features.{k}.0", "conv"), (f"features.{k}.1", "bn"),
                    ("classifier.1", "dense")]
  # inception_v3
  for p in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"):
    conv_bn(p)
  blocks = (
      (("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("branch1x1", "branch5x5_1", "branch5x5_2",
       "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool")),
      (("Mixed_6a",), ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")),
      (("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"), ("branch1x1", "branch7x7_1",
       "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3",
       "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool")),
      (("Mixed_7a",), ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2",
       "branch7x7x3_3", "branch7x7x3_4")),
      (("Mixed_7b", "Mixed_7c"), ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b",
       "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b",
       "branch_pool")))
  for mixed, branches in blocks:
    for m in mixed:
      for b in branches:
        conv_bn(f"{m}.{b}")
  return names + [("fc", "dense")]


def _torch_tensors(name: str, kind: str, state: Mapping, fc6_hwc=None) -> dict:
  """{(collection, leaf): (source name, array in our layout)} of one torchvision module."""
  roles = {"bn": (("weight", "params", "scale"), ("bias", "params", "bias"),
                  ("running_mean", "batch_stats", "mean"), ("running_var", "batch_stats", "var"))
           }.get(kind, (("weight", "params", "kernel"), ("bias", "params", "bias")))
  out = {}
  for suffix, collection, leaf in roles:
    key = f"{name}.{suffix}"
    if key not in state:
      continue
    w = np.asarray(state[key])
    if leaf == "kernel" and kind == "dense" and w.ndim == 2:
      if fc6_hwc is not None and w.shape[1] == int(np.prod(fc6_hwc)):
        # torch flattens the pooled map as (c, h, w), we as (h, w, c): permute fc6's inputs.
        h, wd, c = fc6_hwc
        w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
      w = w.T
    elif leaf == "kernel" and w.ndim == 4:  # (out, in / groups, kh, kw) -> (kh, kw, in / g, out)
      w = w.transpose(2, 3, 1, 0)
    out[(collection, leaf)] = (key, w)
  return out


_KERAS_ROLES = {"kernel": ("params", "kernel"), "depthwise_kernel": ("params", "kernel"),
                "bias": ("params", "bias"), "gamma": ("params", "scale"),
                "beta": ("params", "bias"), "moving_mean": ("batch_stats", "mean"),
                "moving_variance": ("batch_stats", "var")}


def _keras_tensors(name: str, roles: Mapping[str, np.ndarray]) -> dict:
  out = {}
  for role, w in roles.items():
    w = np.asarray(w)
    if role == "depthwise_kernel" and w.ndim == 4:  # (kh, kw, c, 1) -> (kh, kw, 1, c)
      w = w.transpose(0, 1, 3, 2)
    out[_KERAS_ROLES.get(role, ("?", role))] = (f"{name}/{role}", w)
  return out


def _keras_order(model_name: str, calls: list, kind: str) -> list:
  """Our modules of one kind, reordered into Keras' model.layers order."""
  ours = [path for path, k in calls if k == kind]
  if model_name == "inception_v3" and kind in ("conv", "bn") and len(ours) == len(
      _KERAS_INCEPTION_ORDER):
    return [ours[i] for i in _KERAS_INCEPTION_ORDER]
  if model_name == "resnet50" and kind in ("conv", "bn"):
    # Keras builds a stage's first block as shortcut, 1, 2, 3 but lists it as 1, 2, shortcut, 3.
    out, i = [ours[0]], 1
    while i < len(ours):
      block = ours[i:i + 4]
      if len(block) == 4 and block[3][-1] in ("conv_proj", "norm_proj"):
        out += [block[0], block[1], block[3], block[2]]
        i += 4
      else:
        out += ours[i:i + 3]
        i += 3
    return out
  return ours


# ----------------------------------------------------------------------------- assembling


def _fmt_shape(a) -> str:
  return "x".join(str(d) for d in a.shape) if a.shape else "scalar"


def _assemble(pairs, shapes, problems: list[str]) -> dict:
  """pairs: [(our module path, {(collection, leaf): (source name, array)})] -> variables."""
  flat = {}
  for path, tensors in pairs:
    expected = {}
    for collection in ("params", "batch_stats"):
      node = shapes.get(collection, {})
      for part in path:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
      for leaf, sd in (node.items() if isinstance(node, Mapping) else ()):
        if not isinstance(sd, Mapping):
          expected[(collection, leaf)] = sd
    where = "/".join(path)
    for key, sd in expected.items():
      if key not in tensors:
        problems.append(f"missing in file: {where}/{key[1]} ({key[0]}, expected "
                        f"{_fmt_shape(sd)})")
        continue
      name, w = tensors[key]
      if w.shape != sd.shape:
        problems.append(f"shape mismatch: {name} {_fmt_shape(w)} (as {where}/{key[1]}, expected "
                        f"{_fmt_shape(sd)})")
        continue
      flat[(key[0], *path, key[1])] = jnp.asarray(w, sd.dtype)
    for key, (name, w) in tensors.items():
      if key not in expected:
        problems.append(f"unexpected in file: {name} {_fmt_shape(w)} (no {key[1]} in {where})")
  variables = {}
  for key, value in flat.items():
    node = variables
    for part in key[:-1]:
      node = node.setdefault(part, {})
    node[key[-1]] = value
  return variables


def _pair(ours: list, theirs: list, what: str, problems: list[str]) -> list:
  if len(ours) != len(theirs):
    problems.append(f"{what}: the file has {len(theirs)}, the model {len(ours)}")
  return list(zip(ours, theirs))


def _fail(problems: list[str], path, model_name: str, note: str = "") -> None:
  if problems:
    shown = "\n  ".join(problems)
    raise ValueError(f"{os.fspath(path)!r} does not fit {model_name}{note}; "
                     f"{len(problems)} tensor(s) differ, nothing was loaded:\n  {shown}")


def _torch_num_classes(model_name: str, state: Mapping) -> int | None:
  key = {"alexnet": "classifier.6.weight", "mobilenet_v2": "classifier.1.weight"}.get(
      model_name, "fc.weight")
  return int(state[key].shape[0]) if key in state and state[key].ndim == 2 else None


def load_pretrained(path: str | os.PathLike, model_name: str, *, format: str | None = None,
                    num_classes: int | None = None) -> Pretrained:
  """Imports a torchvision or Keras ImageNet checkpoint into our `model_name`, exactly.

  Args:
    path: a torchvision state dict (`.pth`/`.pt`/`.bin`, read with torch; `.safetensors`, read
      with NumPy), or Keras applications weights (`.h5` legacy/full-model, `.weights.h5`,
      `.keras`, read with h5py) of ResNet50, InceptionV3 or MobileNetV2 with their classifier
      (include_top=True).
    model_name: "alexnet", "resnet50", "mobilenet_v2" or "inception_v3" (torchvision: all
      four; Keras: all but alexnet).
    format: "torch", "safetensors" or "keras"; None: from the extension.
    num_classes: expected classifier width; None: the file's (1000 for ImageNet).

  Returns:
    `Pretrained`: model (the `variant` matching the source), float32 variables, preprocessing,
    source (file name, SHA-256, format, framework, dropped tensors). torchvision's inception_v3
    auxiliary classifier (`AuxLogits.*`, training only) is dropped and listed in
    `source["dropped"]`; every other tensor is used exactly once.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: unknown model or format, a model the source framework lacks, or tensors that
      are missing, unexpected or of another shape (ONE message listing all of them; nothing is
      returned half-loaded).
    ImportError: a `.pth` file without torch installed (the message names the extra).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no weights file at {os.fspath(path)!r}")
  if model_name not in MODELS:
    raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}")
  fmt = format or detect_format(path)
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
  framework = "keras" if fmt == "keras" else "torchvision"
  if (model_name, framework) not in _VARIANTS:
    raise ValueError(f"{framework} has no {model_name}; supported: "
                     f"{sorted(k for k in _VARIANTS if k[1] == framework)}")
  problems, dropped = [], []
  if framework == "torchvision":
    state = _strip_module_prefix(_read_torch(path) if fmt == "torch" else _read_safetensors(path))
    file_classes = _torch_num_classes(model_name, state)
  else:
    layers = _read_keras(path)
    file_classes = int(layers["dense"][-1][1]["kernel"].shape[-1]) if layers["dense"] else None
  if file_classes is None:
    raise ValueError(f"{os.fspath(path)!r} has no {model_name} classifier; files saved without "
                     f"their top (include_top=False) are not supported")
  if num_classes is not None and num_classes != file_classes:
    raise ValueError(f"num_classes={num_classes} but the file's classifier has {file_classes} "
                     f"outputs")
  kwargs = dict(_VARIANTS[(model_name, framework)])
  model = registry.get_model(model_name, num_classes=file_classes, **kwargs)
  calls, shapes = _trace(model, 299 if model_name == "inception_v3" else 224)
  if framework == "torchvision":
    hwc = (6, 6, model.widths[-1]) if model_name == "alexnet" else None
    names = _torch_names(model_name, model)
    pairs = [(path_, _torch_tensors(name, kind, state, hwc if name == "classifier.1" else None))
             for (path_, kind_ours), (name, kind) in _pair(calls, names, "modules", problems)]
    for (_, kind_ours), (name, kind) in zip(calls, names):
      if kind_ours != kind:
        problems.append(f"{name} is a {kind} in torchvision, a {kind_ours} in ours")
    used = {n for _, t in pairs for n, _ in t.values()}
    for key in sorted(state):
      if key in used or key.endswith(".num_batches_tracked"):
        continue
      if model_name == "inception_v3" and key.startswith("AuxLogits."):
        dropped.append(key)
        continue
      problems.append(f"unexpected in file: {key} {_fmt_shape(state[key])}")
  else:
    pairs = []
    for kind in ("conv", "depthwise", "bn", "dense"):
      ours = _keras_order(model_name, calls, kind)
      for path_, (name, roles) in _pair(ours, layers[kind], f"{kind} layers", problems):
        pairs.append((path_, _keras_tensors(name, roles)))
  variables = _assemble(pairs, shapes, problems)
  note = f" ({framework}, variant {kwargs.get('variant', 'default')!r})"
  _fail(problems, path, model_name, note)
  preprocessing = _PREPROCESSING.get((model_name, framework), TORCHVISION)
  source = {"file": os.path.basename(os.fspath(path)), "sha256": file_sha256(path),
            "format": fmt, "framework": framework, "dropped": dropped}
  return Pretrained(model=model, variables=variables, preprocessing=preprocessing, source=source,
                    format=fmt, variant=kwargs.get("variant", "default"), model_name=model_name,
                    model_kwargs=kwargs, num_classes=file_classes)
