"""Fixtures of the search-service tests: fake searchers (fast API tests) and a real Corel-1K
searcher (the demo trained for two steps on Corel-1K at 32x32) for the load and browser tests."""

from __future__ import annotations

import fcntl
import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the search service needs the [serve] extra")
pytest.importorskip("httpx", reason="the API tests need httpx (the [test] extra)")

from cbir_jax import config_util  # pylint: disable=wrong-import-position
from cbir_jax.index import BinaryIndex, FloatIndex  # pylint: disable=wrong-import-position
from cbir_jax.kernels import bits  # pylint: disable=wrong-import-position
from cbir_jax.query import decode_image  # pylint: disable=wrong-import-position

REPO = Path(__file__).resolve().parents[2]
CLASS_NAMES = ["zero", "one", "two", "three", "four"]


class FakeSearcher:
  """ImageSearcher's interface without a network: the 'features' of an 8x8 RGB image are its
  192 pixels / 255 (float index) or their mean-threshold bits (binary index)."""

  image_shape = (8, 8, 3)

  def __init__(self, kind: str = "float", n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.kind = kind
    self.class_names = list(CLASS_NAMES)
    self.database = rng.integers(0, 256, (n,) + self.image_shape, dtype=np.uint8)
    self.ids = np.arange(100, 100 + n, dtype=np.int64)  # ids are not positions
    self.batch_sizes: list[int] = []  # every embed call's batch size
    vectors = self.embed(self.database)
    self.batch_sizes.clear()
    if kind == "float":
      self.index = FloatIndex(vectors.shape[1])
    else:
      self.index = BinaryIndex(int(np.prod(self.image_shape)))
    self.index.add(vectors, ids=self.ids)

  def decode(self, data: bytes) -> np.ndarray:
    return decode_image(data, self.image_shape)

  def embed(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != self.image_shape:
      raise ValueError(f"images must have shape (q, 8, 8, 3), got {images.shape}")
    self.batch_sizes.append(len(images))
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if self.kind == "float":
      return x
    return bits.pack_bits(x > 0.5)

  def search_vectors(self, queries, k):
    return self.index.search(queries, k)

  def search(self, images, k):
    return self.search_vectors(self.embed(images), k)

  def labels(self, ids):
    ids = np.asarray(ids)
    return np.where(ids >= 0, (ids - 100) % len(CLASS_NAMES), -1)

  def image(self, image_id):
    position = int(image_id) - 100
    return self.database[position] if 0 <= position < len(self.database) else None

  def warmup(self, batch_sizes, k=1):
    del batch_sizes, k


def png_bytes(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, "PNG")
  return buf.getvalue()


@pytest.fixture
def fake_searchers():
  return {"float": FakeSearcher("float"), "binary": FakeSearcher("binary")}


@pytest.fixture
def client(fake_searchers):
  from fastapi.testclient import TestClient  # pylint: disable=import-outside-toplevel
  from cbir_jax.serve.app import ServeConfig, create_app  # pylint: disable=import-outside-toplevel
  app = create_app(fake_searchers, ServeConfig(max_upload_bytes=200_000, max_pixels=1_000_000))
  with TestClient(app) as c:
    yield c


def _build_corel_demo(workdir: Path, corel: str) -> None:
  from cbir_jax import demo  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("_serve_test_demo_config",
                                                REPO / "configs" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("quick")
  config.dataset.name = "corel1k"
  config.dataset.manual_dir = corel
  config.dataset.data_dir = str(workdir / "tfds")
  config.dataset.image_size = 32
  config.dataset.train_split = "database"
  config.dataset.eval_split = "query"
  config.num_steps = 2  # A searchable model, not a good one: the tests need only exact matches.
  demo.run_demo(config, str(workdir))


@pytest.fixture(scope="session")
def corel_demo(tmp_path_factory) -> Path:
  """A demo run folder on Corel-1K (float.index, binary.index, the model, the prepared data),
  built once per test run and shared by pytest-xdist workers through a lock file."""
  corel = config_util.shared_dataset("corel1k")
  if not corel:
    pytest.skip(f"Corel-1K not found under {config_util.shared_datasets_root()}")
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the run's folder, shared by its workers
  workdir = base / "serve_corel_demo"
  with open(base / "serve_corel_demo.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "binary.index").exists():
      _build_corel_demo(workdir, corel)
  return workdir


@pytest.fixture(scope="module")
def corel_service(corel_demo):
  """(base URL of a uvicorn server on a free loopback port serving the Corel demo's float and
  binary indexes, their searchers, the Corel folder)."""
  from cbir_jax.serve import server  # pylint: disable=import-outside-toplevel
  from cbir_jax.serve.app import ServeConfig, create_app  # pylint: disable=import-outside-toplevel
  searchers = server.open_searchers([str(corel_demo / "float.index"),
                                     str(corel_demo / "binary.index")])
  app = create_app(searchers, ServeConfig(), warmup=True)
  with server.running(app) as url:
    yield url, searchers, config_util.shared_dataset("corel1k")


def corel_file(corel: str, image_id: int, class_names: list[str]) -> Path:
  """The Corel-1K file of an image id (class = id // 100)."""
  return Path(corel) / class_names[image_id // 100] / f"{image_id}.jpg"
