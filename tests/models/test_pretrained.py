"""Imported checkpoints are exact: each source framework's model with random weights (and random
batch-norm statistics, in eval mode) is exported, imported and compared endpoint by endpoint.

Error measure: max |ours - source| / max |source| per endpoint, float32 on both sides (printed;
run with -s to see them). Keras tests always run (tensorflow is a dependency); torch tests skip
without torch; the .safetensors path is also tested without torch against a lax reference.
"""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cbir_jax.models import pretrained, registry
from tests import pretrained_files

TOLERANCE = 1e-4


def _rel_err(ours, ref) -> float:
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  assert np.abs(ref).max() > 0, "degenerate reference (all zeros)"
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _apply(p: pretrained.Pretrained, x: np.ndarray, endpoints):
  fn = jax.jit(lambda v, x: p.model.apply(v, x, train=False, features=endpoints))
  logits, feats = fn(p.variables, jnp.asarray(x))
  return {"logits": np.asarray(logits), **{k: np.asarray(v) for k, v in feats.items()}}


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _same_variables(a, b) -> bool:
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  return [k for k, _ in la] == [k for k, _ in lb] and all(
      np.array_equal(x, y) for (_, x), (_, y) in zip(la, lb))


def _report(tag: str, errors: dict[str, float]) -> None:
  print(f"\n[pretrained max rel err] {tag}: " +
        ", ".join(f"{k} {v:.2e}" for k, v in sorted(errors.items())))
  bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
  assert not bad, f"{tag}: max relative error above {TOLERANCE}: {bad}"


# ------------------------------------------------------------------------------ preprocessing


def test_preprocessing_records_and_json(rng):
  images = rng.integers(0, 256, size=(2, 5, 4, 3), dtype=np.uint8)
  x = images.astype(np.float64)
  expected = {
      "torchvision": (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
      "caffe": x[..., ::-1] - [103.939, 116.779, 123.68],
      "inception": x / 127.5 - 1,
  }
  for record in (pretrained.TORCHVISION, pretrained.CAFFE, pretrained.INCEPTION):
    out = jax.jit(record.apply)(images)
    assert out.dtype == jnp.float32 and out.shape == images.shape
    np.testing.assert_allclose(out, expected[record.name], rtol=1e-6, atol=1e-5)
    again = pretrained.Preprocessing.from_json(record.to_json())
    assert again == record
  with pytest.raises(ValueError, match="uint8"):
    pretrained.TORCHVISION.apply(images.astype(np.float32))
  with pytest.raises(ValueError, match="channel_order"):
    pretrained.Preprocessing("x", "GBR", 1.0, (0, 0, 0), (1, 1, 1))


# ------------------------------------------------------------------------------------ Keras

# keras.applications name, our name, input (h, w) (InceptionV3 needs >= 75), preprocessing.
KERAS = [
    ("ResNet50", "resnet50", (64, 96), "caffe", "keras"),
    ("InceptionV3", "inception_v3", (75, 107), "inception", "default"),
    ("MobileNetV2", "mobilenet_v2", (64, 96), "inception", "keras"),
]


def _keras_model(app: str, hw, seed: int):
  keras = pytest.importorskip("keras", reason="the Keras tests need keras (tensorflow)")
  keras.utils.set_random_seed(seed)
  model = getattr(keras.applications, app)(weights=None, input_shape=(*hw, 3),
                                           classifier_activation=None)
  rng = np.random.default_rng(seed)
  for layer in model.layers:  # random BN statistics and affine terms, so conversion shows
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.get_weights()[-1].shape[0]
      values = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                rng.uniform(0.5, 1.5, n)]
      layer.set_weights(values if layer.scale else values[1:])
  # Outputs: logits and the global-average-pooled feature (the layer before the classifier).
  return keras, keras.Model(model.inputs, [model.output, model.layers[-2].output]), model


@pytest.mark.parametrize("app,name,hw,prep,variant", KERAS, ids=[k[1] for k in KERAS])
def test_keras_exact(app, name, hw, prep, variant, rng, tmp_path):
  seed = int(rng.integers(2**31))
  keras, both, model = _keras_model(app, hw, seed)
  x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
  ref_logits, ref_pool = (np.asarray(a) for a in both(x, training=False))
  model.save_weights(tmp_path / "w.weights.h5")  # Keras 3 format
  model.save(tmp_path / "model.h5")  # legacy full-model HDF5 (the published files' layout)
  model.save(tmp_path / "model.keras")  # zip holding model.weights.h5
  p = pretrained.load_pretrained(tmp_path / "w.weights.h5", name)
  for other in ("model.h5", "model.keras"):
    assert _same_variables(p.variables, pretrained.load_pretrained(tmp_path / other,
                                                                   name).variables), other
  assert (p.variant, p.preprocessing.name, p.format, p.num_classes) == (variant, prep, "keras",
                                                                          1000)
  assert p.source["framework"] == "keras" and len(p.source["sha256"]) == 64
  # Keras counts BN moving statistics as (non-trainable) parameters.
  assert _count(p.variables) == model.count_params()
  assert _count(p.variables["params"]) == sum(int(np.prod(w.shape))
                                              for w in model.trainable_weights)
  out = _apply(p, x, "pool")
  _report(f"keras {app}", {"logits": _rel_err(out["logits"], ref_logits),
                           "pool": _rel_err(out["pool"], ref_pool)})
  if name == "mobilenet_v2":  # same parameter tree, but our default variant is not Keras':
    # the tolerance tells them apart (measured 8.6e-4 at the least, so far).
    default = dataclasses.replace(p, model=registry.get_model(name, num_classes=1000))
    assert _rel_err(_apply(default, x, "pool")["logits"], ref_logits) > TOLERANCE


def test_keras_notop_trunk_into_dfs_net(rng, tmp_path):
  """A Keras file saved without its classifier imports as the trunk alone (head=False)."""
  keras = pytest.importorskip("keras", reason="the Keras tests need keras (tensorflow)")
  keras.utils.set_random_seed(int(rng.integers(2**31)))
  model = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.get_weights()[0].shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                         rng.uniform(0.5, 1.5, n)])
  model.save_weights(tmp_path / "notop.weights.h5")
  p = pretrained.load_pretrained(tmp_path / "notop.weights.h5", "mobilenet_v2")
  assert p.num_classes is None and p.model.head is False and "head" not in p.variables["params"]
  x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
  fmap = jax.jit(lambda v, x: p.model.apply(v, x, train=False))(p.variables, x)
  _report("keras MobileNetV2 include_top=False", {
      "feature map": _rel_err(fmap, np.asarray(model(x, training=False)))})
  dfs = registry.get_model("dfs_mobilenet_v2", num_classes=5, backbone_kwargs=p.model_kwargs)
  fresh = jax.eval_shape(lambda: dfs.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  merged, mask = pretrained.merge_pretrained(fresh, p.variables)
  assert all(jax.tree.leaves(mask["backbone"])) and not any(jax.tree.leaves(mask["dfs"]))
  assert _same_variables(merged["params"]["backbone"], p.variables["params"])
  assert _same_variables(merged["batch_stats"]["backbone"], p.variables["batch_stats"])


# ------------------------------------------------------------------------------ torchvision

# our name, input (h, w), endpoints compared, preprocessing, variant.
TORCH = [
    ("alexnet", (127, 159), ("fc6", "fc7", "fc8"), "torchvision", "default"),
    ("resnet50", (64, 96), ("pool",), "torchvision", "torchvision"),
    ("mobilenet_v2", (64, 96), ("pool",), "torchvision", "default"),
    ("inception_v3", (75, 107), ("pool",), "inception", "torchvision"),
]


def _import_torchvision(monkeypatch):
  """torch and torchvision, or a skip naming them. torchvision imports triton (torch's GPU
  compiler), whose native library crashes the process when loaded after TensorFlow; these CPU
  tests do not need it, so it is hidden when TensorFlow is already loaded."""
  if "tensorflow" in sys.modules and "triton" not in sys.modules:
    monkeypatch.setitem(sys.modules, "triton", None)
  torch = pytest.importorskip("torch", reason="torch not installed (pip install "
                              "'cbir_jax[bench]'): torchvision .pth import not tested")
  torchvision = pytest.importorskip("torchvision", reason="torchvision not installed (pip "
                                    "install 'cbir_jax[bench]')")
  return torch, torchvision


def _torch_model(name: str, seed: int, monkeypatch):
  torch, torchvision = _import_torchvision(monkeypatch)
  torch.manual_seed(seed)
  kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
  model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
  rng = np.random.default_rng(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        for tensor, values in ((m.weight, rng.uniform(0.5, 1.5, n)), (m.bias, rng.normal(0, .1, n)),
                               (m.running_mean, rng.normal(0, 0.1, n)),
                               (m.running_var, rng.uniform(0.5, 1.5, n))):
          tensor.copy_(torch.tensor(values, dtype=torch.float32))
  return torch, model


def _torch_endpoints(torch, model, name: str, x: np.ndarray) -> dict:
  captured = {}
  hooks = []
  if name == "alexnet":  # fc6 / fc7 after their ReLUs (classifier[2], classifier[5])
    for key, i in (("fc6", 2), ("fc7", 5)):
      hooks.append(model.classifier[i].register_forward_hook(
          lambda m, a, out, key=key: captured.__setitem__(key, out.detach().clone())))
  else:  # pooled feature = the classifier's input
    head = model.classifier if name == "mobilenet_v2" else model.fc
    hooks.append(head.register_forward_pre_hook(
        lambda m, a: captured.__setitem__("pool", a[0].detach().clone())))
  with torch.no_grad():
    logits = model(torch.tensor(x.transpose(0, 3, 1, 2)))
  for h in hooks:
    h.remove()
  out = {k: v.numpy() for k, v in captured.items()}
  out["logits"] = logits.numpy()
  if name == "alexnet":
    out["fc8"] = out["logits"]
  return out


@pytest.mark.parametrize("name,hw,endpoints,prep,variant", TORCH, ids=[t[0] for t in TORCH])
def test_torch_exact(name, hw, endpoints, prep, variant, rng, tmp_path, monkeypatch):
  seed = int(rng.integers(2**31))
  torch, model = _torch_model(name, seed, monkeypatch)
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  state = model.state_dict()
  torch.save(state, tmp_path / "w.pth")
  save_file({k: v.numpy() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
  x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
  ref = _torch_endpoints(torch, model, name, x)
  p = pretrained.load_pretrained(tmp_path / "w.pth", name)
  st = pretrained.load_pretrained(tmp_path / "w.safetensors", name)
  assert _same_variables(p.variables, st.variables)
  assert (p.variant, p.preprocessing.name, p.format, st.format) == (variant, prep, "torch",
                                                                      "safetensors")
  # Parameter counts equal torchvision's, less the dropped inception auxiliary head.
  dropped = set(p.source["dropped"])
  assert all(k.startswith("AuxLogits.") for k in dropped) and bool(dropped) == (
      name == "inception_v3")
  n_params = sum(v.numel() for k, v in model.named_parameters() if k not in dropped)
  n_stats = sum(v.numel() for k, v in model.named_buffers()
                if k not in dropped and not k.endswith("num_batches_tracked"))
  assert _count(p.variables["params"]) == n_params
  assert _count(p.variables.get("batch_stats", {})) == n_stats
  out = _apply(p, x, endpoints)
  _report(f"torchvision {name}", {k: _rel_err(out[k], ref[k]) for k in ("logits", *endpoints)})
  if name == "resnet50":  # same parameter tree, but our default variant pads differently
    default = dataclasses.replace(p, model=registry.get_model(name, num_classes=1000))
    assert _rel_err(_apply(default, x, endpoints)["logits"], ref["logits"]) > TOLERANCE


# ------------------------------------------------- .safetensors without torch (runs in CI)



def _adaptive_avg_pool_nchw(x: np.ndarray, out: int) -> np.ndarray:
  """torch.nn.AdaptiveAvgPool2d on NCHW, written out from torch's bin formula."""
  _, _, h, w = x.shape
  rows = [(i * h // out, -(-(i + 1) * h // out)) for i in range(out)]
  cols = [(j * w // out, -(-(j + 1) * w // out)) for j in range(out)]
  return np.stack([np.stack([x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for c0, c1 in cols], -1)
                   for r0, r1 in rows], -2)


def _torch_layout_alexnet(state: dict, x_nchw: np.ndarray) -> dict:
  """torchvision's AlexNet forward in its own layouts (NCHW, OIHW, (c, h, w) flatten)."""
  hp = lax.Precision.HIGHEST

  def conv(x, i, stride, pad):
    y = lax.conv_general_dilated(x, state[f"features.{i}.weight"], (stride, stride),
                                 [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                 precision=hp)
    return jax.nn.relu(y + state[f"features.{i}.bias"][None, :, None, None])

  pool = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 3, 3), (1, 1, 2, 2), "VALID")
  y = pool(conv(x_nchw, 0, 4, 2))
  y = pool(conv(y, 3, 1, 2))
  y = pool(conv(conv(conv(y, 6, 1, 1), 8, 1, 1), 10, 1, 1))
  flat = _adaptive_avg_pool_nchw(np.asarray(y, np.float64), 6).reshape(len(x_nchw), -1)
  dense = lambda v, i: v @ state[f"classifier.{i}.weight"].T.astype(np.float64) + state[
      f"classifier.{i}.bias"]
  fc6 = np.maximum(dense(flat, 1), 0)
  fc7 = np.maximum(dense(fc6, 4), 0)
  return {"fc6": fc6, "fc7": fc7, "fc8": dense(fc7, 6)}


def test_safetensors_alexnet_without_torch(rng, tmp_path, monkeypatch):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  state = pretrained_files.alexnet_state(rng, num_classes=10)
  save_file(state, str(tmp_path / "alexnet.safetensors"))
  p = pretrained.load_pretrained(tmp_path / "alexnet.safetensors", "alexnet")
  assert p.num_classes == 10 and p.format == "safetensors"
  assert _count(p.variables["params"]) == sum(v.size for v in state.values())
  x = rng.normal(size=(2, 127, 159, 3)).astype(np.float32)  # final map 3x4, not square
  ref = _torch_layout_alexnet(state, x.transpose(0, 3, 1, 2))
  out = _apply(p, x, ("fc6", "fc7", "fc8"))
  _report("safetensors alexnet (no torch)", {k: _rel_err(out[k], ref[k]) for k in ref})
  if _has("torchvision"):  # the table above is torchvision's own
    _, torchvision = _import_torchvision(monkeypatch)
    tv = torchvision.models.alexnet(weights=None, num_classes=10).state_dict()
    assert {k: tuple(v.shape) for k, v in tv.items()} == pretrained_files.alexnet_shapes(10)


def _has(module: str) -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec(module) is not None


# -------------------------------------------------------------------------------- failures


def test_mismatched_tensors_listed_in_one_message(rng, tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  state = pretrained_files.alexnet_state(rng, num_classes=10)
  del state["features.3.bias"]  # missing
  state["features.6.weight"] = state["features.6.weight"][:, :, :2]  # wrong shape
  state["features.99.weight"] = np.zeros((2, 2), np.float32)  # unexpected
  save_file(state, str(tmp_path / "bad.safetensors"))
  with pytest.raises(ValueError) as info:
    pretrained.load_pretrained(tmp_path / "bad.safetensors", "alexnet")
  message = str(info.value)
  assert "3 difference(s), nothing was loaded" in message
  assert "missing in file: conv2/bias (params, expected 192)" in message
  assert ("shape mismatch: features.6.weight 384x192x2x3 in the file (as conv3/kernel: 2x3x192x384 "
          "in our layout, expected 3x3x192x384)") in message
  assert "unexpected in file: features.99.weight 2x2" in message
  with pytest.raises(ValueError, match="num_classes=1000 but the file's classifier has 10"):
    pretrained.load_pretrained(tmp_path / "bad.safetensors", "alexnet", num_classes=1000)


def test_bad_requests(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="no weights file"):
    pretrained.load_pretrained(tmp_path / "none.pth", "alexnet")
  (tmp_path / "w.npz").write_bytes(b"")
  with pytest.raises(ValueError, match="format= one of"):
    pretrained.load_pretrained(tmp_path / "w.npz", "alexnet")
  with pytest.raises(ValueError, match="model_name must be one of"):
    pretrained.load_pretrained(tmp_path / "w.npz", "lenet_l", format="torch")
  (tmp_path / "w.h5").write_bytes(b"")
  with pytest.raises(ValueError, match="keras has no alexnet"):
    pretrained.load_pretrained(tmp_path / "w.h5", "alexnet")
  (tmp_path / "w.pth").write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
  with pytest.raises(ImportError, match=r"needs PyTorch: pip install 'cbir_jax\[bench\]'"):
    pretrained.load_pretrained(tmp_path / "w.pth", "alexnet")


# ----------------------------------------------------------------------------------- merge


def _host_variables(model, hw, rng):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *hw, 3))))
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.1, s.dtype), shapes)


def test_merge_trunk_into_dfs_net(rng):
  hw = (32, 32)
  trunk_model = registry.get_model("mobilenet_v2_tiny", num_classes=1000)
  trunk = _host_variables(trunk_model, hw, rng)
  dfs = registry.get_model("dfs_mobilenet_v2_tiny", num_classes=7)
  fresh = _host_variables(dfs, hw, rng)
  merged, mask = pretrained.merge_pretrained(fresh, trunk)
  assert jax.tree.structure(merged) == jax.tree.structure(fresh)
  assert set(mask) == {"backbone", "dfs", "head"}
  assert all(jax.tree.leaves(mask["backbone"])) and not any(jax.tree.leaves(mask["dfs"]))
  assert not any(jax.tree.leaves(mask["head"]))
  assert _count({k: v for k, v in trunk["params"].items() if k != "head"}) == sum(
      int(np.prod(leaf.shape)) for leaf, m in zip(jax.tree.leaves(merged["params"]),
                                                  jax.tree.leaves(mask)) if m)
  np.testing.assert_array_equal(merged["params"]["head"]["kernel"],
                                fresh["params"]["head"]["kernel"])
  x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
  _, ours = dfs.apply(merged, x, features="pool")
  _, ref = trunk_model.apply(trunk, x, features="pool")
  np.testing.assert_allclose(ours["pool"], ref["pool"], rtol=1e-5, atol=1e-6)


def test_merge_new_head_and_mismatch(rng):
  hw = (64, 64)
  trunk = _host_variables(registry.get_model("alexnet_tiny", num_classes=1000), hw, rng)
  fresh = _host_variables(registry.get_model("alexnet_tiny", num_classes=3), hw, rng)
  merged, mask = pretrained.merge_pretrained(fresh, trunk)
  assert mask["fc8"] == {"kernel": False, "bias": False} and mask["fc7"]["kernel"]
  np.testing.assert_array_equal(merged["params"]["fc6"]["kernel"], trunk["params"]["fc6"]["kernel"])
  assert merged["params"]["fc8"]["kernel"].shape == (32, 3)
  other = _host_variables(registry.get_model("dfs_resnet_tiny", num_classes=3), hw, rng)
  with pytest.raises(ValueError, match=r"nothing was merged:\n  trunk leaf params/conv1/bias"):
    pretrained.merge_pretrained(other, trunk)
