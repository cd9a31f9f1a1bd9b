"""Bad input catalogue (issue 9): every mistake gets a clear error naming the value, and nothing
is ever half-written.

Two halves:
- launchers: `bin/*.py` run as a user runs them, with one bad flag each; the exit status is
  non-zero, stderr names the offending flag/file/value (no traceback), and no output appears.
  All launcher runs share one module fixture that runs them two at a time.
- library: `pytest.raises(..., match=...)` on the public functions, plus simulated crashes between
  write and rename (`os.replace` raising) in every atomic writer: the previous file survives
  byte-identical and no temporary file is left behind.

Cases where the code does not (yet) give a clear error are `xfail(strict=True)` with the reason.
"""

import concurrent.futures
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from cbir_jax import atomic, query
from cbir_jax.data import datasets
from cbir_jax.data import images as images_lib
from cbir_jax.eval import plots
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import fuse as fuse_lib
from cbir_jax.features import hashing, igr
from cbir_jax.index import BinaryIndex, FloatIndex, load_index
from cbir_jax.index import storage
from cbir_jax.kernels import euclidean, hamming
from cbir_jax.models import registry

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "configs" / "digits.py"
# The tiny digits run every checkpoint case uses: bin/train.py flags and the same as a config.
TINY_FLAGS = (f"--config={DIGITS}:tiny", "--config.dataset.image_size=16",
              "--config.model.kwargs.lk_features=16", "--config.batch_size=32", "--config.num_steps=2",
              "--config.dataset.eval_split=", "--config.distributed=off")
NOT_WRITABLE = "/proc/cbir_bad_inputs"  # root can't create anything under /proc either.


# ----------------------------------------------------------------------------------------------
# Shared inputs.


def _tree(folder: Path) -> dict[str, bytes]:
  """Every file under `folder` (relative path -> bytes), hidden/temporary ones included; {} when
  the folder does not exist."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file()}


def _float_index(n: int = 10, dim: int = 8, seed: int = 0) -> FloatIndex:
  index = FloatIndex(dim, metadata={"note": "test"})
  index.add(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32),
            ids=np.arange(n) * 3)
  return index


def _binary_index(n: int = 10, nbits: int = 40) -> BinaryIndex:
  index = BinaryIndex(nbits)
  codes = np.random.default_rng(1).integers(0, 2 ** 32, (n, 2), dtype=np.uint32)
  codes[:, 1] &= np.uint32((1 << (nbits - 32)) - 1)
  index.add(codes)
  return index


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
  """Bad (and a few good) files shared by the library and launcher cases."""
  root = tmp_path_factory.mktemp("bad_inputs")
  p = {"root": root}
  p["float_index"] = root / "float.index"
  _float_index().save(p["float_index"])
  p["binary_index"] = root / "binary.index"
  _binary_index().save(p["binary_index"])
  good = p["float_index"].read_bytes()
  p["zero_index"] = root / "zero.index"
  p["zero_index"].write_bytes(b"")
  p["truncated_index"] = root / "truncated.index"
  p["truncated_index"].write_bytes(good[:-40])
  p["bitflip_index"] = root / "bitflip.index"
  flipped = bytearray(good)
  flipped[-40] ^= 0x01  # one bit of the last stored id
  p["bitflip_index"].write_bytes(bytes(flipped))
  p["v2_index"] = root / "v2.index"
  newer = (storage.FORMAT_VERSION + 1).to_bytes(4, "little")  # magic (8 bytes), then version
  p["v2_index"].write_bytes(good[:8] + newer + good[12:])
  p["foreign_index"] = root / "foreign.index"
  buf = io.BytesIO()
  Image.new("RGB", (4, 4)).save(buf, "PNG")
  p["foreign_index"].write_bytes(buf.getvalue())

  rng = np.random.default_rng(2)
  p["queries8"] = root / "queries8.npy"
  np.save(p["queries8"], rng.standard_normal((3, 8)).astype(np.float32))
  p["queries5"] = root / "queries5.npy"
  np.save(p["queries5"], rng.standard_normal((3, 5)).astype(np.float32))
  nan = rng.standard_normal((6, 8)).astype(np.float32)
  nan[4, 2] = np.nan
  p["nan_feats"] = root / "nan_feats.npy"
  np.save(p["nan_feats"], nan)
  np.save(root / "nan_feats.labels.npy", np.array([0, 1, 0, 1, 0, 1], np.int32))

  p["zero_npy"] = root / "zero.npy"
  p["zero_npy"].write_bytes(b"")
  np.save(root / "zero.labels.npy", np.zeros(3, np.int32))

  images = root / "images"
  images.mkdir()
  p["empty_jpg"] = images / "empty.jpg"
  p["empty_jpg"].write_bytes(b"")
  p["corrupt_png"] = images / "corrupt.png"
  p["corrupt_png"].write_bytes(b"this is not an image at all")
  full = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(full, "JPEG")
  p["truncated_jpg"] = images / "truncated.jpg"
  p["truncated_jpg"].write_bytes(full.getvalue()[:len(full.getvalue()) // 2])
  p["no_images"] = root / "no_images"
  p["no_images"].mkdir()
  (p["no_images"] / "notes.txt").write_text("not an image")
  (p["no_images"] / "sub").mkdir()
  p["a_file"] = root / "a_file"
  p["a_file"].write_text("a file where a folder should be")
  return p


# ----------------------------------------------------------------------------------------------
# Launchers: each case runs one bin/*.py with one bad flag.


@dataclasses.dataclass(frozen=True)
class Case:
  script: str
  args: Callable[[dict], list[str]]
  says: Callable[[dict], list[str]]          # substrings of the last stderr line
  absent: Callable[[dict], list[Path]] = lambda p: []   # outputs that must not appear
  unchanged: Callable[[dict], list[Path]] = lambda p: []  # folders: no file added or changed


LAUNCHER_CASES = {
    "train_typo_config_field": Case(
        "train", lambda p: [*TINY_FLAGS, f"--workdir={p['root'] / 'w_typo'}",
                            "--config.optimzer.name=sgd"],
        lambda p: ["optimzer", "optimizer"], lambda p: [p["root"] / "w_typo"]),
    "train_missing_config_file": Case(
        "train", lambda p: [f"--config={p['root'] / 'nope.py'}",
                            f"--workdir={p['root'] / 'w_nocfg'}"],
        lambda p: [str(p["root"] / "nope.py")], lambda p: [p["root"] / "w_nocfg"]),
    "train_unknown_model": Case(
        "train", lambda p: [*TINY_FLAGS, f"--workdir={p['root'] / 'w_model'}",
                            "--config.model.name=lenet9"],
        lambda p: ["unknown model 'lenet9'", "lenet_l"], lambda p: [p["root"] / "w_model"]),
    "train_workdir_not_writable": Case(
        "train", lambda p: [*TINY_FLAGS, f"--workdir={NOT_WRITABLE}/run"],
        lambda p: [f"--workdir {NOT_WRITABLE}/run"]),
    "train_resume_other_model": Case(
        "train", lambda p: [*TINY_FLAGS[:2], "--config.model.kwargs.lk_features=24", *TINY_FLAGS[3:],
                            f"--workdir={p['other_model_workdir']}"],
        lambda p: [str(p["other_model_workdir"] / "checkpoints"), "'lk_features': 16",
                   "'lk_features': 24"],
        unchanged=lambda p: [p["other_model_workdir"]]),
    "extract_unknown_endpoint": Case(
        "extract", lambda p: [f"--workdir={p['workdir']}", "--split=train", "--endpoint=f7",
                              f"--out={p['root'] / 'x_f7.npy'}"],
        lambda p: ["endpoint 'f7'", "lenet_l", "f6"], lambda p: [p["root"] / "x_f7.npy"]),
    "extract_unknown_split": Case(
        "extract", lambda p: [f"--workdir={p['workdir']}", "--split=validation",
                              "--endpoint=f6", f"--out={p['root'] / 'x_val.npy'}"],
        lambda p: ["split 'validation'", "train"], lambda p: [p["root"] / "x_val.npy"]),
    "extract_out_not_writable": Case(
        "extract", lambda p: [f"--workdir={p['workdir']}", "--split=train", "--endpoint=f6",
                              f"--out={NOT_WRITABLE}/f.npy"],
        lambda p: [f"--out {NOT_WRITABLE}/f.npy"]),
    "index_info_zero_byte": Case(
        "index", lambda p: ["info", f"--index={p['zero_index']}"],
        lambda p: [str(p["zero_index"]), "empty (0 bytes)"]),
    "index_search_query_dim": Case(
        "index", lambda p: ["search", f"--index={p['float_index']}",
                            f"--queries={p['queries5']}", f"--out={p['root'] / 'r5.npz'}"],
        lambda p: ["(m, 8)", "(3, 5)"], lambda p: [p["root"] / "r5.npz"]),
    "index_build_nan_features": Case(
        "index", lambda p: ["build", f"--features={p['nan_feats']}",
                            f"--out={p['root'] / 'nan.index'}"],
        lambda p: ["NaN", "first rows [4]"], lambda p: [p["root"] / "nan.index"]),
    "search_missing_query": Case(
        "search", lambda p: [f"--index={p['float_index']}", f"--query={p['root'] / 'no.jpg'}",
                             f"--out={p['root'] / 's_missing'}"],
        lambda p: [f"--query '{p['root'] / 'no.jpg'}' does not exist"],
        lambda p: [p["root"] / "s_missing"]),
    "search_k_zero": Case(
        "search", lambda p: [f"--index={p['float_index']}", f"--query={p['empty_jpg']}",
                             "--k=0", f"--out={p['root'] / 's_k0'}"],
        lambda p: ["--k must be >= 1, got 0"], lambda p: [p["root"] / "s_k0"]),
    "search_truncated_index": Case(
        "search", lambda p: [f"--index={p['truncated_index']}",
                             f"--query_features={p['queries8']}", f"--out={p['root'] / 's_tr'}"],
        lambda p: [str(p["truncated_index"]), "truncated"], lambda p: [p["root"] / "s_tr"]),
    "hash_nan_features": Case(
        "hash", lambda p: [f"--database={p['nan_feats']}", "--bits=4",
                           f"--out_dir={p['root'] / 'h_nan'}"],
        lambda p: ["finite", "nan", "row 4, column 2"],
        unchanged=lambda p: [p["root"] / "h_nan"]),
    "hash_bits_too_many": Case(
        "hash", lambda p: [f"--database={p['nan_feats']}", "--bits=9",
                           f"--out_dir={p['root'] / 'h_bits'}"],
        lambda p: ["bits must be in [1, 8]", "got 9"],
        unchanged=lambda p: [p["root"] / "h_bits"]),
    "evaluate_missing_database": Case(
        "evaluate", lambda p: [f"--database={p['root'] / 'nope.npy'}",
                               f"--out={p['root'] / 'e_out'}"],
        lambda p: [f"--database={p['root'] / 'nope.npy'} does not exist"],
        lambda p: [p["root"] / "e_out"]),
    "demo_unknown_dataset": Case(
        "demo", lambda p: ["--dataset=digitz", f"--workdir={p['root'] / 'd_ds'}"],
        lambda p: ["unknown data set 'digitz'", "digits"], lambda p: [p["root"] / "d_ds"]),
    "demo_workdir_is_a_file": Case(
        "demo", lambda p: [f"--workdir={p['a_file']}", "--config.retrieval.sheet_k=3"],
        lambda p: [f"--workdir {p['a_file']}"]),
    "demo_typo_config_field": Case(
        "demo", lambda p: [f"--workdir={p['root'] / 'd_typo'}", "--config.retrieval.shet_k=3"],
        lambda p: ["shet_k"], lambda p: [p["root"] / "d_typo"]),
    "evaluate_zero_byte_npy": Case(
        "evaluate", lambda p: [f"--database={p['zero_npy']}", f"--out={p['root'] / 'e_zero'}"],
        lambda p: [f"--database", str(p["zero_npy"])], lambda p: [p["root"] / "e_zero"]),
    "hash_zero_byte_npy": Case(
        "hash", lambda p: [f"--database={p['zero_npy']}", f"--out_dir={p['root'] / 'h_zero'}"],
        lambda p: ["--database", str(p["zero_npy"])],
        lambda p: [p["root"] / "h_zero" / "zero_codes.npy", p["root"] / "h_zero" / "hash.json"]),
    "index_build_zero_byte_npy": Case(
        "index", lambda p: ["build", f"--features={p['zero_npy']}",
                            f"--out={p['root'] / 'zero_built.index'}"],
        lambda p: [f"--features={p['zero_npy']}"], lambda p: [p["root"] / "zero_built.index"]),
    "search_zero_byte_query_features": Case(
        "search", lambda p: [f"--index={p['float_index']}", f"--query_features={p['zero_npy']}",
                             f"--out={p['root'] / 's_zero'}"],
        lambda p: [str(p["zero_npy"])], lambda p: [p["root"] / "s_zero"]),
    "benchmark_unknown_suite": Case(
        "benchmark", lambda p: ["serch"], lambda p: ["'serch'", "search"]),
}

def _launch(case: Case, p: dict) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, str(REPO / "bin" / f"{case.script}.py"),
                         *case.args(p)], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory) -> Path:
  """A 2-step LeNet-L run on digits (16x16, K = 16), trained in this process."""
  import configs.digits  # pylint: disable=import-outside-toplevel
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  config = configs.digits.get_config("tiny")
  config.dataset.image_size, config.model.kwargs.lk_features, config.batch_size = 16, 16, 32
  config.num_steps, config.dataset.eval_split, config.distributed = 2, "", "off"
  workdir = tmp_path_factory.mktemp("trained") / "run"
  trainer.train_and_evaluate(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def launched(files, trained) -> dict:
  """Runs every launcher case (two at a time); case name -> (process, folder snapshots)."""
  p = dict(files, workdir=trained, other_model_workdir=files["root"] / "other_model_run")
  shutil.copytree(trained, p["other_model_workdir"])
  before = {name: {d: _tree(d) for d in case.unchanged(p)}
            for name, case in LAUNCHER_CASES.items()}
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {name: pool.submit(_launch, case, p) for name, case in LAUNCHER_CASES.items()}
    procs = {name: f.result() for name, f in futures.items()}
  return {"paths": p, "procs": procs, "before": before}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAUNCHER_CASES))
def test_launcher_rejects_bad_input(launched, name):
  case, proc, p = LAUNCHER_CASES[name], launched["procs"][name], launched["paths"]
  stderr = proc.stderr.strip()
  assert proc.returncode != 0, f"exit 0; stdout: {proc.stdout[-2000:]}"
  assert "Traceback" not in stderr, stderr[-3000:]
  last = stderr.splitlines()[-1] if stderr else ""
  for text in case.says(p):
    assert text in last, f"{text!r} not in the last stderr line {last!r}"
  for path in case.absent(p):
    assert not path.exists(), f"{path} was written"
  for folder, tree in launched["before"][name].items():
    assert _tree(folder) == tree, f"{folder} changed"


# ----------------------------------------------------------------------------------------------
# Images: missing, empty, corrupt, no images; CMYK, 16-bit and alpha are accepted.


def test_missing_query_image(files):
  missing = files["root"] / "images" / "missing.jpg"
  with pytest.raises(FileNotFoundError, match=f"query '{missing}' does not exist"):
    query.list_query_files(str(missing))


@pytest.mark.parametrize("key, reason", [("empty_jpg", "empty file"),
                                         ("corrupt_png", "cannot identify image file"),
                                         ("truncated_jpg", "truncated")])
def test_unreadable_query_image_names_the_file(files, key, reason):
  path = str(files[key])
  with pytest.raises(ValueError, match=rf"(?i)no query image could be read: {path}: .*{reason}"):
    query.read_query_images([path], None)


def test_unreadable_images_are_skipped_next_to_good_ones(files, tmp_path):
  good = tmp_path / "good.png"
  Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(good)
  paths = [str(files["empty_jpg"]), str(good), str(files["corrupt_png"])]
  images, kept, skipped = query.read_query_images(paths, None)
  assert kept == [str(good)] and images.shape == (1, 4, 4, 3) and np.all(images == 7)
  assert [s.split(": ")[0] for s in skipped] == [paths[0], paths[2]]


def test_folder_with_no_images(files):
  folder = str(files["no_images"])
  with pytest.raises(ValueError, match=f"query folder '{folder}' holds no image files"):
    query.list_query_files(folder)


def test_image_folder_data_set_with_no_images(tmp_path):
  from cbir_jax.data.builders import image_folder  # pylint: disable=import-outside-toplevel
  (tmp_path / "cats").mkdir()
  (tmp_path / "cats" / "readme.txt").write_text("no pictures here")
  with pytest.raises(ValueError, match=f"no images found in '{tmp_path}'"):
    image_folder.folder_files(str(tmp_path), ("cats",))


def test_image_folder_data_set_empty_manual_dir(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=f"manual_dir '{empty}' is empty"):
    datasets.load_arrays("image_folder", "train", manual_dir=str(empty),
                         data_dir=str(tmp_path / "tfds"))
  assert not (tmp_path / "tfds").exists()


def _encode(image: Image.Image, fmt: str) -> bytes:
  buf = io.BytesIO()
  image.save(buf, fmt)
  return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(tmp_path, fmt):
  cmyk = np.zeros((8, 8, 4), np.uint8)
  cmyk[:4, :, 0] = 255   # top: pure cyan -> RGB (0, 255, 255)
  cmyk[4:, :, 3] = 255   # bottom: pure black -> (0, 0, 0)
  data = _encode(Image.fromarray(cmyk, "CMYK"), fmt)
  rgb = images_lib.decode_rgb(data)
  assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
  tol = 8 if fmt == "JPEG" else 0
  np.testing.assert_allclose(rgb[1, 1], [0, 255, 255], atol=tol)
  np.testing.assert_allclose(rgb[6, 6], [0, 0, 0], atol=tol)
  path = tmp_path / f"cmyk.{fmt.lower()}"
  path.write_bytes(data)
  grey, kept, skipped = query.read_query_images([str(path)], (4, 4, 1))  # a 1-channel model
  assert kept == [str(path)] and not skipped and grey.shape == (1, 4, 4, 1)
  np.testing.assert_allclose(grey[0, 0, 0, 0], round(0.587 * 255 + 0.114 * 255), atol=tol)


def test_16_bit_grey_is_scaled_to_8_bit(tmp_path):
  values = np.array([[0, 257, 32768, 65535]], np.uint16)
  data = _encode(Image.fromarray(values), "PNG")
  with Image.open(io.BytesIO(data)) as reopened:
    assert reopened.mode.startswith("I")  # really stored as 16-bit
  rgb = images_lib.decode_rgb(data)
  np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
  path = tmp_path / "g16.png"
  path.write_bytes(data)
  images, _, skipped = query.read_query_images([str(path)], None)
  assert not skipped and images.shape == (1, 1, 4, 3) and images[0, 0, 3, 1] == 255


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_white(mode):
  if mode == "RGBA":
    pixels = np.array([[[200, 10, 20, 255], [200, 10, 20, 0], [0, 0, 0, 128]]], np.uint8)
    want = [[200, 10, 20], [255, 255, 255], [127, 127, 127]]
  else:
    pixels = np.array([[[90, 255], [90, 0], [0, 128]]], np.uint8)
    want = [[90, 90, 90], [255, 255, 255], [127, 127, 127]]
  rgb = images_lib.decode_rgb(_encode(Image.fromarray(pixels, mode), "PNG"))
  assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
  np.testing.assert_allclose(rgb[0], want, atol=1)


# ----------------------------------------------------------------------------------------------
# Index files: zero-byte, truncated, corrupt, other version, not an index, wrong kind, missing.


@pytest.mark.parametrize("key, message", [
    ("zero_index", "is empty (0 bytes)"),
    ("truncated_index", "is truncated"),
    ("bitflip_index", "SHA-256 checksum mismatch"),
    ("v2_index", f"has format version {storage.FORMAT_VERSION + 1}; this cbir_jax reads "
                 f"version {storage.FORMAT_VERSION}"),
    ("foreign_index", "is not a cbir_jax index file"),
])
def test_bad_index_file(files, key, message):
  path = str(files[key])
  with pytest.raises(ValueError, match=f"'{path}'.*{message.replace('(', '.').replace(')', '.')}"):
    FloatIndex.load(path)
  with pytest.raises(ValueError, match=f"'{path}'"):
    load_index(path)


def test_index_of_the_wrong_kind(files):
  with pytest.raises(ValueError, match=f"'{files['binary_index']}' holds a BinaryIndex, not a "
                     "FloatIndex"):
    FloatIndex.load(files["binary_index"])
  with pytest.raises(ValueError, match="holds a FloatIndex, not a BinaryIndex"):
    BinaryIndex.load(files["float_index"])


def test_index_file_of_an_unknown_kind(tmp_path):
  path = tmp_path / "ivf.index"
  storage.save(path, "IVFIndex", {"nlist": 4}, {"data": np.zeros((2, 3), np.float32)}, {})
  with pytest.raises(ValueError, match=f"'{path}' holds an unknown index kind 'IVFIndex'"):
    load_index(path)


def test_missing_index_file(files):
  missing = files["root"] / "missing.index"
  with pytest.raises(FileNotFoundError, match=f"index file '{missing}' does not exist"):
    load_index(missing)


# ----------------------------------------------------------------------------------------------
# Shapes and values: dimension / code width mismatch, NaN/inf, k, empty database.


def test_query_dimension_differs_from_index():
  index = _float_index(dim=8)
  with pytest.raises(ValueError, match=r"q must have shape \(m, 8\), got \(2, 5\)"):
    index.search(np.zeros((2, 5), np.float32), 1)
  with pytest.raises(ValueError, match=r"x must have shape \(m, 8\), got \(2, 9\)"):
    index.add(np.zeros((2, 9), np.float32))
  assert len(index) == 10


def test_code_width_mismatch():
  index = _binary_index(nbits=40)  # 2 words
  with pytest.raises(ValueError, match=r"codes must have shape \(m, 2\) for nbits=40, got "
                     r"\(3, 3\)"):
    index.add(np.zeros((3, 3), np.uint32))
  with pytest.raises(ValueError, match=r"q must have shape \(m, 2\) for nbits=40, got \(1, 1\)"):
    index.search(np.zeros((1, 1), np.uint32), 1)
  with pytest.raises(ValueError, match="bits set beyond nbits=40 in 1 rows, first rows \\[0\\]"):
    index.add(np.array([[0, 1 << 8]], np.uint32))
  with pytest.raises(TypeError, match="must be uint32 words from pack_bits, got dtype float32"):
    index.search(np.zeros((1, 2), np.float32), 1)
  assert len(index) == 10


def test_bad_index_construction_and_ids():
  with pytest.raises(ValueError, match="dim must be a positive int, got 0"):
    FloatIndex(0)
  with pytest.raises(ValueError, match="nbits must be a positive int, got -8"):
    BinaryIndex(-8)
  index = FloatIndex(2)
  with pytest.raises(ValueError, match=r"ids must have shape \(3,\) to match the vectors, got "
                     r"\(2,\)"):
    index.add(np.zeros((3, 2), np.float32), ids=[1, 2])
  with pytest.raises(TypeError, match="ids must be integers .*got dtype float64"):
    index.add(np.zeros((2, 2), np.float32), ids=[1.5, 2.5])
  assert len(index) == 0


def test_hamming_kernel_code_width_mismatch():
  with pytest.raises(ValueError, match="query_codes have 2 uint32 words per code but "
                     "database_codes have 3"):
    hamming.hamming_topk(np.zeros((1, 2), np.uint32), np.zeros((4, 3), np.uint32), 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_rejected_and_nothing_is_added(bad):
  index = _float_index()
  x = np.ones((5, 8), np.float32)
  x[3, 6] = bad
  with pytest.raises(ValueError, match=r"x has NaN/inf .* in 1 rows, first rows \[3\]"):
    index.add(x)
  assert len(index) == 10
  with pytest.raises(ValueError, match=r"q has NaN/inf .* first rows \[3\]"):
    index.search(x, 2)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float64_beyond_float32_is_rejected():
  index = FloatIndex(2)
  with pytest.raises(ValueError, match=r"x has NaN/inf \(or values beyond float32\)"):
    index.add(np.array([[1e300, 0.0]]))


@pytest.mark.parametrize("k", [0, -1, 11])
def test_k_outside_1_to_n(k):
  with pytest.raises(ValueError, match=rf"k must be in \[1, 10\] .*got k = {k}"):
    _float_index().search(np.zeros((1, 8), np.float32), k)
  with pytest.raises(ValueError, match=rf"k must be in \[1, 10\] .*got k = {k}"):
    _binary_index().search(np.zeros((1, 2), np.uint32), k)


def test_k_outside_range_in_kernels():
  q, db = np.zeros((2, 4), np.float32), np.zeros((5, 4), np.float32)
  with pytest.raises(ValueError, match=r"k must be in \[1, 5\] .*got k = 0"):
    euclidean.euclidean_topk(q, db, 0)
  with pytest.raises(ValueError, match=r"k must be in \[1, 5\] .*got k = 6"):
    euclidean.euclidean_topk(q, db, 6)
  with pytest.raises(TypeError, match="k must be an int, got 2.5"):
    euclidean.euclidean_topk(q, db, 2.5)


def test_empty_database():
  with pytest.raises(ValueError, match=r"database is empty \(n = 0\)"):
    FloatIndex(4).search(np.zeros((1, 4), np.float32), 1)
  with pytest.raises(ValueError, match=r"database is empty \(n = 0\)"):
    BinaryIndex(16).search(np.zeros((1, 1), np.uint32), 1)
  with pytest.raises(ValueError, match="database must have at least one row"):
    hashing.MeanThresholdHasher().fit(np.zeros((0, 4)))


def test_hasher_rejects_non_finite_and_wrong_width():
  db = np.random.default_rng(0).standard_normal((6, 8))
  bad = db.copy()
  bad[1, 2] = np.nan
  with pytest.raises(ValueError, match="database must be finite; found nan at row 1, column 2"):
    hashing.MeanThresholdHasher().fit(bad)
  hasher = hashing.MeanThresholdHasher().fit(db)
  bad[1, 2] = -np.inf
  with pytest.raises(ValueError, match="features must be finite; found -inf at row 1, column 2"):
    hasher.transform(bad)
  with pytest.raises(ValueError, match=r"features must have 8 columns \(the fitted b\), got 7"):
    hasher.transform(db[:, :7])


def test_igr_rejects_non_finite_and_label_mismatch():
  x = np.random.default_rng(0).standard_normal((6, 4))
  x[5, 3] = np.inf
  with pytest.raises(ValueError, match="features must be finite; found inf at row 5, column 3"):
    igr.information_gain_rate(x, np.zeros(6, np.int64))
  with pytest.raises(ValueError, match=r"labels must have shape \(6,\), got \(5,\)"):
    igr.information_gain_rate(np.ones((6, 4)), np.zeros(5, np.int64))


def test_hasher_used_before_fit():
  with pytest.raises(ValueError, match="MeanThresholdHasher is not fitted"):
    hashing.MeanThresholdHasher().transform(np.ones((2, 4)))
  with pytest.raises(ValueError, match="threshold must be one of .*got 'median'"):
    hashing.MeanThresholdHasher("median")


def test_fuse_rejects_non_finite_features():
  part = np.ones((3, 2))
  part[1, 0] = np.nan
  with pytest.raises(ValueError, match="part 0 .*finite.*nan at row 1, column 0"):
    fuse_lib.fuse([part, np.ones((3, 2))], normalize="l2")


def test_query_images_of_different_sizes(tmp_path):
  paths = []
  for i, size in enumerate([(4, 4), (6, 4)]):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(np.zeros(size + (3,), np.uint8)).save(paths[-1])
  with pytest.raises(ValueError, match=r"query images differ in size \[\(4, 4, 3\), \(6, 4, 3\)\]"):
    query.read_query_images(paths, None)
  images, _, _ = query.read_query_images(paths, (5, 5, 3))  # resized like the database
  assert images.shape == (2, 5, 5, 3)


def test_load_features_of_a_zero_byte_file(tmp_path):
  path = tmp_path / "db.npy"
  extract_lib.save_features(path, np.ones((3, 2)), {"run": 1})
  path.write_bytes(b"")
  with pytest.raises(ValueError, match=f"{path}"):
    extract_lib.load_features(path)


# ----------------------------------------------------------------------------------------------
# Unknown names: model, data set, split, endpoint.


def test_unknown_model_name():
  with pytest.raises(ValueError, match="unknown model 'lenet9'; valid models: .*lenet_l"):
    registry.get_model("lenet9", num_classes=10)
  with pytest.raises(ValueError, match="unknown model 'Lenet_L'"):
    registry.endpoints("Lenet_L")


def test_unknown_data_set_and_split():
  with pytest.raises(ValueError, match="unknown data set 'digitz'; valid names: .*digits"):
    datasets.load_arrays("digitz", "train")
  with pytest.raises(ValueError, match="unknown split 'validation' for digits; valid splits: "
                     "train, test, all"):
    datasets.load_arrays("digits", "validation")


def test_bad_image_size_and_image_arrays():
  with pytest.raises(ValueError, match="image_size must be a positive int or \\(height, width\\), "
                     "got 0"):
    datasets.load_arrays("digits", "train", image_size=0)
  model = registry.get_model("lenet_l", num_classes=10, lk_features=8)
  with pytest.raises(ValueError, match=r"images must be uint8\[n, h, w, c\], got "
                     r"float32\[2, 8, 8, 1\]"):
    extract_lib.extract(model, {}, np.zeros((2, 8, 8, 1), np.float32), "f6", batch_size=2)


def test_unknown_endpoint():
  model = registry.get_model("lenet_l", num_classes=10, lk_features=8)
  with pytest.raises(ValueError, match="unknown endpoint 'f7' for .*f6"):
    extract_lib.extract(model, {}, np.zeros((2, 32, 32, 1), np.uint8), "f7", batch_size=2)


# ----------------------------------------------------------------------------------------------
# Checkpoints of another model.


def _config_of(workdir: Path):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  return trainer.load_config(str(workdir))


def test_resume_with_another_model_name(trained, tmp_path):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  before = _tree(workdir)
  config = _config_of(workdir)
  config.model.name = "resnet_tiny"
  config.model.kwargs = ml_collections.ConfigDict({"small_input": True})
  with pytest.raises(ValueError, match=r"checkpoint .*checkpoints/2 was written for model "
                     r"'lenet_l'.*asks for model 'resnet_tiny'"):
    trainer.train_and_evaluate(config, str(workdir))
  assert _tree(workdir) == before


def test_restore_checkpoint_of_another_model(trained, tmp_path):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  config = json.loads((workdir / "config.json").read_text())
  config["model"] = {"name": "alexnet_tiny", "kwargs": {"small_input": True}}
  (workdir / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=rf"checkpoint {workdir}/checkpoints/2 was written for "
                     r"model 'lenet_l'.*asks for model 'alexnet_tiny'"):
    trainer.restore(str(workdir))


def test_restore_a_step_that_does_not_exist(trained):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 999 in .*found \[2\]"):
    trainer.restore(str(trained), step=999)


def test_restore_a_folder_that_is_not_a_run(tmp_path):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}/config.json not found"):
    trainer.restore(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Not writable; interrupted saves (crash between write and rename); nothing half-written.


def test_index_save_into_a_missing_or_unwritable_folder(tmp_path):
  index = _float_index()
  with pytest.raises(FileNotFoundError, match=f"folder '{NOT_WRITABLE}' for index file"):
    index.save(f"{NOT_WRITABLE}/db.index")
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(FileNotFoundError, match=f"{blocker}"):
    index.save(blocker / "db.index")


def _crash_on_rename(monkeypatch):
  def crash(src, dst):
    raise OSError(f"simulated crash renaming {src} onto {dst}")
  monkeypatch.setattr(os, "replace", crash)


def _assert_survived(folder: Path, before: dict[str, bytes]) -> None:
  """The folder holds exactly the files it held before, byte for byte (no temporary files)."""
  after = _tree(folder)
  assert sorted(after) == sorted(before), f"files now {sorted(after)}, before {sorted(before)}"
  for name, data in before.items():
    assert after[name] == data, f"{name} changed"


def test_interrupted_index_save_keeps_the_previous_file(tmp_path, monkeypatch):
  path = tmp_path / "db.index"
  _float_index(seed=0).save(path)
  before = _tree(tmp_path)
  _crash_on_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    _float_index(n=20, seed=1).save(path)
  _assert_survived(tmp_path, before)
  monkeypatch.undo()
  np.testing.assert_array_equal(FloatIndex.load(path).vectors, _float_index(seed=0).vectors)


def test_unserialisable_metadata_writes_nothing(tmp_path):
  path = tmp_path / "db.index"
  _float_index().save(path)
  before = _tree(tmp_path)
  index = FloatIndex(8, metadata={"bad": object()})
  index.add(np.zeros((1, 8), np.float32))
  with pytest.raises(ValueError, match="metadata must be JSON-serialisable: .*object"):
    index.save(path)
  _assert_survived(tmp_path, before)


def test_interrupted_json_and_text_writes(tmp_path, monkeypatch):
  """cbir_jax.atomic: what the demo, query-by-image (results.json, ranking.json/.csv) and plots write through."""
  json_path, csv_path = tmp_path / "ranking.json", tmp_path / "ranking.csv"
  atomic.write_json(json_path, {"k": 1})
  atomic.write_text(csv_path, "a,b\n")
  before = _tree(tmp_path)
  _crash_on_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    atomic.write_json(json_path, {"k": 2})
  with pytest.raises(OSError, match="simulated crash"):
    atomic.write_text(csv_path, "c,d\n")
  _assert_survived(tmp_path, before)


def test_crash_halfway_through_writing(tmp_path):
  path = tmp_path / "results.json"
  atomic.write_json(path, {"k": 1})
  before = _tree(tmp_path)
  with pytest.raises(RuntimeError, match="disk full"):
    with atomic.atomic_write(path) as f:
      f.write('{"k": ')
      raise RuntimeError("disk full")
  _assert_survived(tmp_path, before)
  with pytest.raises(TypeError, match="not JSON seriali[sz]able"):
    atomic.write_json(path, {"k": object()})
  _assert_survived(tmp_path, before)


def test_interrupted_plots_keep_the_previous_png(tmp_path, monkeypatch):
  sheet, curve = str(tmp_path / "sheet.png"), str(tmp_path / "curve.png")
  rng = np.random.default_rng(0)
  args = (np.zeros((1, 4, 4, 1), np.uint8), np.array([0]),
          rng.integers(0, 255, (1, 2, 4, 4, 1), dtype=np.uint8), np.array([[0, 1]]),
          np.array([[0.5, 1.0]]))
  plots.contact_sheet(sheet, *args)
  plots.curves(curve, np.arange(3), {"a": np.arange(3.0)}, xlabel="k", ylabel="mAP")
  before = _tree(tmp_path)
  _crash_on_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    plots.contact_sheet(sheet, *args, title="second")
  with pytest.raises(OSError, match="simulated crash"):
    plots.curves(curve, np.arange(3), {"b": np.ones(3)}, xlabel="k", ylabel="mAP")
  _assert_survived(tmp_path, before)


def test_interrupted_feature_save_keeps_the_previous_files(tmp_path, monkeypatch):
  path = tmp_path / "db.npy"
  extract_lib.save_features(path, np.ones((3, 2)), {"run": 1}, labels=[0, 1, 2], ids=[5, 6, 7])
  before = _tree(tmp_path)
  _crash_on_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    extract_lib.save_features(path, np.zeros((3, 2)), {"run": 2}, labels=[2, 1, 0])
  _assert_survived(tmp_path, before)


def test_interrupted_config_write_keeps_the_previous_file(trained, tmp_path, monkeypatch):
  from cbir_jax.train import trainer  # pylint: disable=import-outside-toplevel
  shutil.copy(trained / "config.json", tmp_path / "config.json")
  before = _tree(tmp_path)
  config = _config_of(tmp_path)
  config.seed = 123
  _crash_on_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    trainer._write_config(config, str(tmp_path))  # pylint: disable=protected-access
  _assert_survived(tmp_path, before)
