"""FloatIndex / BinaryIndex: search vs references and FAISS, ids, validation, save/load."""

import os

import faiss
import numpy as np
import pytest

from cbir_jax.index import BinaryIndex, FloatIndex, load_index
from cbir_jax.index import storage
from cbir_jax.kernels import pack_bits, to_faiss_bytes
from tests.kernels import reference


@pytest.fixture(scope="module")
def float_index():
  rng = np.random.default_rng(20261128)  # module fixture: a fixed seed
  x = rng.integers(0, 3, size=(203, 6)).astype(np.float32)  # heavy ties
  ids = rng.choice(2**40, size=203, replace=False).astype(np.int64)
  index = FloatIndex(6, chunk_size=64, metadata={"model": "lenet_l", "endpoint": "f6"})
  index.add(x[:100], ids=ids[:100])
  index.add(x[100:], ids=ids[100:])
  return index, x, ids


def test_float_search_returns_user_ids_in_tie_order(float_index, rng):
  index, x, ids = float_index
  q = rng.integers(0, 3, size=(4, 6)).astype(np.float32)
  d, i = index.search(q, 20)
  assert len(index) == 203 and d.dtype == np.float32 and i.dtype == np.int64
  ref_d, ref_i = reference.rank(reference.l2(q, x), 20)
  np.testing.assert_array_equal(d, ref_d)
  np.testing.assert_array_equal(i, ids[ref_i])
  faiss_index = faiss.IndexIDMap(faiss.IndexFlatL2(6))
  faiss_index.add_with_ids(x, ids)
  fd, _ = faiss_index.search(q, 20)
  np.testing.assert_array_equal(fd, ref_d)


def test_binary_search_default_ids_and_faiss(rng):
  bits = rng.random((150, 48)) < 0.15
  codes = pack_bits(bits)
  index = BinaryIndex(48, chunk_size=40)
  index.add(codes[:77])
  index.add(codes[77:])
  q = pack_bits(rng.random((5, 48)) < 0.15)
  d, i = index.search(q, 150)
  ref_d, ref_i = reference.rank(reference.hamming(q, codes), 150)
  np.testing.assert_array_equal(d, ref_d)
  np.testing.assert_array_equal(i, ref_i)  # default ids are insertion positions
  faiss_index = faiss.IndexBinaryFlat(48)
  faiss_index.add(to_faiss_bytes(codes, 48))
  fd, _ = faiss_index.search(to_faiss_bytes(q, 48), 150)
  np.testing.assert_array_equal(fd, ref_d)


def test_validation_errors():
  index = FloatIndex(3)
  with pytest.raises(ValueError, match="empty"):
    index.search(np.zeros((1, 3)), 1)
  with pytest.raises(ValueError, match=r"shape \(m, 3\), got \(2, 4\)"):
    index.add(np.zeros((2, 4)))
  bad = np.zeros((5, 3))
  bad[3, 1] = np.nan
  bad[4, 0] = np.inf
  with pytest.raises(ValueError, match=r"2 rows, first rows \[3, 4\]"):
    index.add(bad)
  with pytest.raises(TypeError, match="float"):
    index.add(np.zeros((2, 3), bool))
  with pytest.raises(ValueError, match=r"ids must have shape \(2,\)"):
    index.add(np.zeros((2, 3)), ids=[1, 2, 3])
  with pytest.raises(TypeError, match="ids must be integers"):
    index.add(np.zeros((2, 3)), ids=[1.5, 2.0])
  index.add(np.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"k must be in \[1, 2\].*got k = 3"):
    index.search(np.zeros((1, 3)), 3)
  with pytest.raises(ValueError, match="NaN/inf"):
    index.search(np.full((1, 3), np.nan), 1)
  with pytest.raises(ValueError, match="dim must be a positive int"):
    FloatIndex(0)
  b = BinaryIndex(40)
  with pytest.raises(ValueError, match=r"shape \(m, 2\) for nbits=40, got \(1, 1\)"):
    b.add(np.zeros((1, 1), np.uint32))
  with pytest.raises(TypeError, match="uint32"):
    b.add(np.zeros((1, 5), np.uint8))
  with pytest.raises(ValueError, match=r"beyond nbits=40 in 1 rows, first rows \[1\]"):
    b.add(np.array([[0, 0], [0, 1 << 8]], np.uint32))
  with pytest.raises(ValueError, match="method"):
    BinaryIndex(8, method="simd")


@pytest.mark.parametrize("kind", ["float", "binary"])
def test_save_load_round_trip(tmp_path, kind, rng):
  if kind == "float":
    index = FloatIndex(5, metadata={"thresholds": np.linspace(0, 1, 5), "model": "m"})
    index.add(rng.normal(size=(31, 5)), ids=rng.integers(-2**62, 2**62, 31))
    q = rng.normal(size=(3, 5))
  else:
    index = BinaryIndex(70, method="gemm", metadata={"hash": "mean"})
    index.add(pack_bits(rng.random((31, 70)) < 0.5))
    q = pack_bits(rng.random((3, 70)) < 0.5)
  path = tmp_path / "db.cbiridx"
  index.save(path)
  assert [p.name for p in tmp_path.iterdir()] == ["db.cbiridx"]  # no temp file left behind
  back = type(index).load(path)
  generic = load_index(str(path))
  assert type(generic) is type(index) and len(back) == 31
  np.testing.assert_array_equal(back.ids, index.ids)
  assert back.metadata == (
      {"thresholds": np.linspace(0, 1, 5).tolist(), "model": "m"} if kind == "float"
      else {"hash": "mean"})
  for got, want in zip(back.search(q, 7), index.search(q, 7)):
    np.testing.assert_array_equal(got, want)
  if kind == "binary":
    assert back.method == "gemm" and back.nbits == 70
    with pytest.raises(ValueError, match="holds a BinaryIndex, not a FloatIndex"):
      FloatIndex.load(path)


def test_corrupt_files(tmp_path):
  index = FloatIndex(2)
  index.add(np.arange(8, dtype=np.float32).reshape(4, 2))
  good = tmp_path / "good.idx"
  index.save(good)
  blob = good.read_bytes()
  cases = {
      "empty": (b"", "empty"),
      "foreign": (b"PK\x03\x04" + blob[4:], "not a cbir_jax index file"),
      "truncated": (blob[:-5], "truncated"),
      "header_only": (blob[:20], "truncated"),
      "flipped": (blob[:-40] + bytes([blob[-40] ^ 1]) + blob[-39:], "checksum"),
      "version": (blob[:8] + (99).to_bytes(4, "little") + blob[12:], "format version 99"),
  }
  for name, (data, message) in cases.items():
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
      FloatIndex.load(path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    FloatIndex.load(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="folder"):
    index.save(tmp_path / "no" / "such" / "dir.idx")
  with pytest.raises(ValueError, match="JSON"):
    FloatIndex(2, metadata={"f": object()}).save(tmp_path / "meta.idx")
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
  assert storage.FORMAT_VERSION == 1


def test_bfloat16_storage_identical_results_saved_and_loaded(tmp_path, rng):
  x = rng.standard_normal((2_500, 20)).astype(np.float32)
  x[1_000:1_100] = x[5] + (rng.integers(-2, 3, (100, 20)) * 2.0**-18).astype(np.float32)
  ids = rng.choice(2**40, size=len(x), replace=False)
  plain, halved = FloatIndex(20), FloatIndex(20, storage="bfloat16", metadata={"m": 1})
  for index in (plain, halved):
    index.add(x, ids=ids)
  path = tmp_path / "half.cbiridx"
  halved.save(path)
  loaded = load_index(path)
  assert loaded.storage == "bfloat16" and loaded.metadata == {"m": 1}
  np.testing.assert_array_equal(loaded.vectors, x)  # the file keeps the float32 vectors
  for nq in (1, 7, 16, 40):  # 40: past the half-precision kernel's query limit
    q = np.concatenate([x[5:6], rng.standard_normal((nq - 1, 20)).astype(np.float32)])
    for k in (1, 50, len(x)):
      want = plain.search(q, k)
      for got in (halved.search(q, k), loaded.search(q, k)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
  plain.save(tmp_path / "plain.cbiridx")
  assert load_index(tmp_path / "plain.cbiridx").storage == "float32"


def test_bad_storage():
  with pytest.raises(ValueError, match=r"storage must be one of \('float32', 'bfloat16'\), got "
                     r"'float16'"):
    FloatIndex(3, storage="float16")


def test_cosine_index_ranks_by_cosine_and_keeps_it_on_disk(tmp_path, rng):
  n, d = int(rng.integers(20, 90)), int(rng.integers(1, 40))
  x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 100, (n, 1))).astype(np.float32)
  x[n // 2] = 0  # a zero vector stays zero
  index = FloatIndex(d, normalize=True, metadata={"m": 1})
  index.add(x, ids=np.arange(n) + 7)
  units = reference.unit_rows(x)
  np.testing.assert_allclose(index.vectors, units, atol=1e-6)
  assert np.array_equal(index.unit_vectors(), index.vectors)
  with pytest.raises(ValueError, match="read-only"):
    index.unit_vectors()[0, 0] = 1.0
  q = (rng.standard_normal((5, d)) * 50).astype(np.float32)
  k = n  # k = N
  dist, ids = index.search(q, k)
  full = ((reference.unit_rows(q)[:, None, :] - units[None]) ** 2).sum(-1)   # 2 - 2 cos, float64
  decided = np.sort(full, axis=1)
  np.testing.assert_allclose(dist, decided, atol=1e-5)
  for row in range(5):  # the ranking up to float32 near-ties
    want = np.argsort(full[row], kind="stable") + 7
    gaps = np.diff(decided[row]) > 1e-5   # clear of both neighbours in the ranking
    clear = np.concatenate([[True], gaps]) & np.concatenate([gaps, [True]])
    np.testing.assert_array_equal(ids[row][clear], want[clear])
  path = tmp_path / "cos.cbiridx"
  index.save(path)
  loaded = load_index(path)
  assert loaded.normalize and loaded.metadata == {"m": 1}
  np.testing.assert_array_equal(loaded.search(q, 3)[1], index.search(q, 3)[1])
  # A plain index (the default) stores its vectors as added and refuses unit_vectors.
  plain = FloatIndex(d)
  plain.add(x)
  assert not plain.normalize and np.array_equal(plain.vectors, x)
  with pytest.raises(ValueError, match="cosine index"):
    plain.unit_vectors()
  with pytest.raises(ValueError, match="normalize must be True or False, got 'yes'"):
    FloatIndex(d, normalize="yes")
  with pytest.raises(ValueError, match="q has NaN/inf"):
    index.search(np.full((1, d), np.nan, np.float32), 1)
