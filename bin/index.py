"""Build, search and inspect exact indexes from .npy files.

  python bin/index.py build --features=feats.npy [--ids=ids.npy] [--labels=labels.npy] \
      [--nbits=48] [--metadata=model=lenet_l] --out=db.cbiridx
  python bin/index.py search --index=db.cbiridx --queries=q.npy --k=10 [--out=result.npz]
  python bin/index.py info --index=db.cbiridx

`build` makes a FloatIndex from float features (n, d), or a BinaryIndex from uint32 codes
(n, ceil(nbits / 32)) or bool bits (n, nbits), packed with kernels.bits.pack_bits. Labels, when
given, go into the index metadata under "labels". Provenance goes into the metadata too:
"features", the JSON sidecar `extract` wrote next to the features (model, endpoint, checkpoint,
preprocessing), and for codes written by `hash`, "hashing": its hash.json (settings, selected
dimensions) with the fitted thresholds from hash_state.npz; labels and ids are read from the
features' `.labels.npy` / `.ids.npy` sidecars when --labels / --ids are not given. `search`
writes D, I (user ids) and, when the index has labels, L (labels of the hits) to --out as .npz,
and prints the first rows.
"""

import json
import os

from absl import app, flags
import numpy as np

from cbir_jax._bin import launch

COMMANDS = ("build", "search", "info")

_FEATURES = flags.DEFINE_string("features", None, "build: .npy of float features (n, d), uint32 "
                                "codes (n, ceil(nbits/32)) or bool bits (n, nbits).")
_IDS = flags.DEFINE_string("ids", None, "build: optional .npy of (n,) integer ids (int64).")
_LABELS = flags.DEFINE_string("labels", None, "build: optional .npy of (n,) integer labels.")
_NBITS = flags.DEFINE_integer("nbits", None, "build: code length for uint32 codes "
                              "(default 32 * words; bool bits give it themselves).")
_METADATA = flags.DEFINE_multi_string("metadata", [], "build: key=value metadata, repeatable.")
_OUT = flags.DEFINE_string("out", None, "build: index file to write; search: optional .npz.")
_INDEX = flags.DEFINE_string("index", None, "search/info: index file to read.")
_QUERIES = flags.DEFINE_string("queries", None, "search: .npy of queries, same kind as the "
                               "index (float, uint32 codes or bool bits).")
_K = flags.DEFINE_integer("k", 10, "search: results per query.")
_SHOW = flags.DEFINE_integer("show", 5, "search: query rows to print.")


def _fail(message: str) -> None:
  launch.fail("index", message)


def _load_npy(flag: flags.FlagHolder, required: bool = True) -> np.ndarray | None:
  if flag.value is None:
    if required:
      _fail(f"--{flag.name} is required")
    return None
  return launch.load_npy("index", flag.name, flag.value)


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    _fail(f"cannot read provenance file {path}: {e}")


def _provenance(features_path: str) -> dict:
  """Metadata on what produced the vectors at `features_path` (see the module docstring)."""
  from cbir_jax.features import extract as extract_lib  # pylint: disable=import-outside-toplevel
  out = {}
  sidecar = extract_lib.sidecar_paths(features_path)["json"]
  if os.path.isfile(sidecar):
    out["features"] = _read_json(sidecar)
  folder, name = os.path.split(os.path.abspath(features_path))
  hash_json = os.path.join(folder, "hash.json")
  if name.endswith("_codes.npy") and os.path.isfile(hash_json):
    meta = _read_json(hash_json)
    if name[:-len("_codes.npy")] in meta.get("codes", {}):
      state_path = os.path.join(folder, "hash_state.npz")
      if os.path.isfile(state_path):
        with np.load(state_path) as state:
          meta["hasher_state"] = {key[len("hasher_"):]: state[key].tolist()
                                  for key in state.files if key.startswith("hasher_")}
      out["hashing"] = meta
  return out


def _sidecar_npy(features_path: str, name: str) -> np.ndarray | None:
  from cbir_jax.features import extract as extract_lib  # pylint: disable=import-outside-toplevel
  path = extract_lib.sidecar_paths(features_path)[name]
  if not os.path.isfile(path):
    return None
  return launch.load_npy("index", "features", path, what=f"the {name} sidecar {path} of --features")


def _build() -> None:
  from cbir_jax.index import BinaryIndex, FloatIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import pack_bits  # pylint: disable=import-outside-toplevel
  if not _OUT.value:
    _fail("--out is required for build")
  x = _load_npy(_FEATURES)
  ids = _load_npy(_IDS, required=False)
  if ids is None:
    ids = _sidecar_npy(_FEATURES.value, "ids")
  labels = _load_npy(_LABELS, required=False)
  if labels is None:
    labels = _sidecar_npy(_FEATURES.value, "labels")
  metadata = {"source": os.path.abspath(_FEATURES.value), **_provenance(_FEATURES.value)}
  for item in _METADATA.value:
    if "=" not in item:
      _fail(f"--metadata={item!r} must look like key=value")
    key, value = item.split("=", 1)
    metadata[key] = value
  if labels is not None:
    if labels.ndim != 1 or labels.shape[0] != x.shape[0] or labels.dtype.kind not in "iu":
      _fail(f"--labels must be ({x.shape[0]},) integers, got {labels.shape} {labels.dtype}")
    metadata["labels"] = labels.tolist()
  if x.ndim != 2:
    _fail(f"--features must be 2-D, got shape {x.shape}")
  if x.dtype == np.bool_:
    nbits = x.shape[1]
    index, x = BinaryIndex(nbits, metadata=metadata), pack_bits(x)
  elif x.dtype == np.uint32:
    nbits = _NBITS.value or 32 * x.shape[1]
    index = BinaryIndex(nbits, metadata=metadata)
  elif x.dtype.kind == "f":
    index = FloatIndex(x.shape[1], metadata=metadata)
  else:
    _fail(f"--features dtype {x.dtype} is not float, uint32 codes or bool bits")
  index.add(x, ids=ids)
  index.save(_OUT.value)
  print(f"wrote {type(index).__name__} with {len(index)} rows to {_OUT.value}")


def _load_index():
  from cbir_jax.index import load_index  # pylint: disable=import-outside-toplevel
  if not _INDEX.value:
    _fail("--index is required")
  return load_index(_INDEX.value)


def _search() -> None:
  from cbir_jax import atomic  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import BinaryIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import pack_bits  # pylint: disable=import-outside-toplevel
  index = _load_index()
  q = _load_npy(_QUERIES)
  if isinstance(index, BinaryIndex) and q.dtype == np.bool_:
    q = pack_bits(q)
  if not 1 <= _K.value <= len(index):
    _fail(f"--k must be in [1, {len(index)}] (index size), got {_K.value}")
  d, i = index.search(q, _K.value)
  result = {"D": d, "I": i}
  labels = index.metadata.get("labels")
  if labels is not None:
    by_id = dict(zip(index.ids.tolist(), labels))
    result["L"] = np.vectorize(by_id.get, otypes=[np.int64])(i)
  if _OUT.value:
    with atomic.atomic_write(_OUT.value, "wb") as f:
      np.savez(f, **result)
    print(f"wrote {', '.join(result)} ({q.shape[0]} x {_K.value}) to {_OUT.value}")
  for row in range(min(_SHOW.value, q.shape[0])):
    hits = ", ".join(f"{int(ii)}:{dd:.4g}" for ii, dd in zip(i[row], d[row]))
    print(f"query {row}: {hits}")


def _info() -> None:
  from cbir_jax.index import FloatIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import storage  # pylint: disable=import-outside-toplevel
  index = _load_index()
  shape = f"dim={index.dim}" if isinstance(index, FloatIndex) else (
      f"nbits={index.nbits} words={index.words} method={index.method}")
  print(f"{_INDEX.value}: {type(index).__name__}, {len(index)} rows, {shape}, "
        f"format v{storage.FORMAT_VERSION}, {os.path.getsize(_INDEX.value)} bytes")
  for key, value in sorted(index.metadata.items()):
    text = f"[{len(value)} values]" if isinstance(value, list) else repr(value)
    print(f"  {key}: {text}")


def main(argv) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    _fail(f"usage: index.py {{{'|'.join(COMMANDS)}}} --flags; got {argv[1:]}")
  if _K.value is not None and _K.value < 1:
    _fail(f"--k must be >= 1, got {_K.value}")
  try:
    {"build": _build, "search": _search, "info": _info}[argv[1]]()
  except (ValueError, TypeError, FileNotFoundError) as e:
    _fail(str(e))


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
