"""load_pretrained: a torchvision or Keras checkpoint -> our model, its variables, preprocessing."""

import dataclasses
import os
from collections.abc import Mapping

import flax.linen as nn
from absl import logging
import jax.numpy as jnp

from cbir_jax.models import registry
from cbir_jax.models.pretrained import layouts, readers
from cbir_jax.models.pretrained.preprocessing import CAFFE, INCEPTION, TORCHVISION, Preprocessing
from cbir_jax.models.pretrained.readers import FORMATS

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
_PREPROCESSING = {("inception_v3", "torchvision"): INCEPTION, ("resnet50", "keras"): CAFFE,
                  ("inception_v3", "keras"): INCEPTION, ("mobilenet_v2", "keras"): INCEPTION}


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """An imported checkpoint: `model.apply(variables, preprocessing.apply(images_uint8))`.

  Attributes:
    model: the unbound Linen module (`registry.get_model(model_name, num_classes=...,
      **model_kwargs)`); for a Keras file without classifier (include_top=False, "_notop"),
      the trunk only (built with `head=False`: `apply` returns the final feature map
      `f32[b, h', w', c]`; what `merge_pretrained` needs to start a DFS-Net).
    variables: `{"params": ..., "batch_stats": ...}` (no batch_stats for AlexNet), float32.
    preprocessing: what the weights expect of their input.
    source: `{"file": base name, "sha256": hex digest, "format", "framework", "dropped": [source
      tensors deliberately not imported, e.g. torchvision inception's AuxLogits.*]}`.
    format: "torch", "safetensors" or "keras".
    variant: our model's `variant` field that matches the source ("default" when none differs).
    model_name, model_kwargs, num_classes: how to rebuild `model`; `model_kwargs` are the
      variant's fields (pass them as a DFS-Net's `backbone_kwargs`); num_classes None: the file
      has no classifier and the model was built with `head=False`.
  """

  model: nn.Module
  variables: dict
  preprocessing: Preprocessing
  source: dict
  format: str
  variant: str
  model_name: str
  model_kwargs: dict
  num_classes: int | None


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
                        f"{layouts.fmt_shape(sd)})")
        continue
      name, w, file_shape = tensors[key]
      if w.shape != sd.shape:
        shape = layouts.fmt_shape
        problems.append(f"shape mismatch: {name} {shape(file_shape)} in the file (as {where}/"
                        f"{key[1]}: {shape(w)} in our layout, expected {shape(sd)})")
        continue
      flat[(key[0], *path, key[1])] = jnp.asarray(w, sd.dtype)
    for key, (name, _, file_shape) in tensors.items():
      if key not in expected:
        problems.append(f"unexpected in file: {name} {layouts.fmt_shape(file_shape)} (no "
                        f"{key[1]} in {where})")
  variables = {}
  for key, value in flat.items():
    node = variables
    for part in key[:-1]:
      node = node.setdefault(part, {})
    node[key[-1]] = value
  return variables


def _pair(ours: list, theirs: list, what: str, problems: list[str]) -> list:
  """Pairs our modules with the source's in order; the unpaired rest of either is a problem."""
  if len(ours) != len(theirs):
    problems.append(f"{what}: the file has {len(theirs)}, the model {len(ours)}")
    for item in ours[len(theirs):]:  # a module path, or (module path, kind)
      path = item[0] if isinstance(item[0], tuple) else item
      problems.append(f"missing in file: our {'/'.join(path)}")
    for item in theirs[len(ours):]:
      problems.append(f"unexpected in file: {item[0]}")
  return list(zip(ours, theirs))


def _fail(problems: list[str], path, model_name: str, note: str = "") -> None:
  if problems:
    shown = "\n  ".join(problems)
    raise ValueError(f"{os.fspath(path)!r} does not fit {model_name}{note}; "
                     f"{len(problems)} difference(s), nothing was loaded:\n  {shown}")


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
      `.keras`, read with h5py) of ResNet50, InceptionV3 or MobileNetV2, with their classifier
      or without it (include_top=False: the trunk alone, `head=False`).
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
  fmt = format or readers.detect_format(path)
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
  framework = "keras" if fmt == "keras" else "torchvision"
  if (model_name, framework) not in _VARIANTS:
    raise ValueError(f"{framework} has no {model_name}; supported: "
                     f"{sorted(k for k in _VARIANTS if k[1] == framework)}")
  problems, dropped = [], []
  if framework == "torchvision":
    read = readers.read_torch if fmt == "torch" else readers.read_safetensors
    state = readers.strip_module_prefix(read(path))
    file_classes = _torch_num_classes(model_name, state)
  else:
    layers = readers.read_keras(path)
    file_classes = int(layers["dense"][-1][1]["kernel"].shape[-1]) if layers["dense"] else None
  kwargs = dict(_VARIANTS[(model_name, framework)])
  trunk_only = file_classes is None and framework == "keras"  # include_top=False
  if file_classes is None and not trunk_only:  # the mismatch list below names the classifier
    file_classes = num_classes or 1000
  if num_classes is not None and num_classes != file_classes:
    raise ValueError(f"num_classes={num_classes} but the file's classifier has "
                     f"{file_classes or 'no'} outputs")
  model = registry.get_model(model_name, num_classes=file_classes or 1,
                             **(dict(kwargs, head=False) if trunk_only else kwargs))
  calls, shapes = layouts.trace_layers(model, 299 if model_name == "inception_v3" else 224)
  if framework == "torchvision":
    hwc = (6, 6, model.widths[-1]) if model_name == "alexnet" else None
    names = layouts.torch_names(model_name, model)
    pairs = [(path_, layouts.torch_tensors(name, kind, state,
                                           hwc if name == "classifier.1" else None))
             for (path_, kind_ours), (name, kind) in _pair(calls, names, "modules", problems)]
    for (_, kind_ours), (name, kind) in zip(calls, names):
      if kind_ours != kind:
        problems.append(f"{name} is a {kind} in torchvision, a {kind_ours} in ours")
    used = {n for _, t in pairs for n, _, _ in t.values()}
    for key in sorted(state):
      if key in used or key.endswith(".num_batches_tracked"):
        continue
      if model_name == "inception_v3" and key.startswith("AuxLogits."):
        dropped.append(key)
        continue
      problems.append(f"unexpected in file: {key} {layouts.fmt_shape(state[key])}")
  else:
    pairs = []
    for kind in ("conv", "depthwise", "bn", "dense"):
      ours = layouts.keras_order(model_name, calls, kind)
      for path_, (name, roles) in _pair(ours, layers[kind], f"{kind} layers", problems):
        pairs.append((path_, layouts.keras_tensors(name, roles)))
  variables = _assemble(pairs, shapes, problems)
  note = f" ({framework}, variant {kwargs.get('variant', 'default')!r})"
  _fail(problems, path, model_name, note)
  preprocessing = _PREPROCESSING.get((model_name, framework), TORCHVISION)
  logging.info("imported %s (%s, %s) into %s with variant=%r (%s classes), preprocessing %r%s",
               os.path.basename(os.fspath(path)), framework, fmt, model_name,
               kwargs.get("variant", "default"), file_classes or "no", preprocessing.name,
               f"; dropped {len(dropped)} tensors ({dropped[0].split('.')[0]}.*)" if dropped
               else "")
  source = {"file": os.path.basename(os.fspath(path)), "sha256": readers.file_sha256(path),
            "format": fmt, "framework": framework, "dropped": dropped}
  return Pretrained(model=model, variables=variables, preprocessing=preprocessing, source=source,
                    format=fmt, variant=kwargs.get("variant", "default"), model_name=model_name,
                    model_kwargs=kwargs, num_classes=file_classes)
