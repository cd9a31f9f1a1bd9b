"""Build, search and inspect exact indexes from .npy files.

  python bin/index.py build --features=feats.npy [--ids=ids.npy] [--labels=labels.npy] \
      [--nbits=48] [--metadata=model=lenet_l] --out=db.cbiridx
  python bin/index.py search --index=db.cbiridx --queries=q.npy --k=10 [--out=result.npz]
  python bin/index.py info --index=db.cbiridx

`build` makes a FloatIndex from float features (n, d), or a BinaryIndex from uint32 codes
(n, ceil(nbits / 32)) or bool bits (n, nbits), packed with kernels.bits.pack_bits. Labels, when
given, go into the index metadata under "labels"; ids and labels default to the features'
`.ids.npy` / `.labels.npy` sidecars. The provenance record of the features' `.json` sidecar
(written by `extract` and `hash`: model, endpoint, run, data set, hash encoder) goes into the
metadata too, so `cbir-search --query=photo.jpg` works on the index (`cbir_jax.jobs.build_index`);
several --features files of the same images are fused into one descriptor (--fusion). `search`
writes D, I (user ids) and, when the index has labels, L (labels of the hits) to --out as .npz,
and prints the first rows.
"""

import os

from absl import app, flags
import numpy as np

from cbir_jax._bin import launch

COMMANDS = ("build", "search", "info")

_FEATURES = flags.DEFINE_list("features", None, "build: .npy of float features (n, d), uint32 "
                              "codes (n, ceil(nbits/32)) or bool bits (n, nbits); several float "
                              "files of the same images (comma separated) are fused into one "
                              "descriptor, e.g. seed 000's AL = F6,fc8.")
_FUSION = flags.DEFINE_enum("fusion", "none", ["none", "l2"], "build, several --features: "
                            "'none' concatenates, 'l2' L2-normalises each part first.")
_FUSION_WEIGHTS = flags.DEFINE_list("fusion_weights", None, "build, several --features: one "
                                    "weight per part (default all 1).")
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


def _build() -> None:
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  if not _OUT.value:
    _fail("--out is required for build")
  if not _FEATURES.value:
    _fail("--features is required for build")
  for path in _FEATURES.value:
    launch.load_npy("index", "features", path, mmap=True)  # Exists and is a readable .npy.
  try:
    weights = None if _FUSION_WEIGHTS.value is None else [float(w) for w in
                                                          _FUSION_WEIGHTS.value]
  except ValueError:
    _fail(f"--fusion_weights must be numbers, got {','.join(_FUSION_WEIGHTS.value)!r}")
  metadata = {}
  for item in _METADATA.value:
    if "=" not in item:
      _fail(f"--metadata={item!r} must look like key=value")
    key, value = item.split("=", 1)
    metadata[key] = value
  index = jobs.build_index(_FEATURES.value, _OUT.value, ids=_load_npy(_IDS, required=False),
                           labels=_load_npy(_LABELS, required=False), nbits=_NBITS.value,
                           metadata=metadata, fusion=_FUSION.value, fusion_weights=weights)
  searchable = "provenance" in index.metadata
  print(f"wrote {type(index).__name__} with {len(index)} rows to {_OUT.value}"
        + ("" if searchable else " (no provenance record: search it with vectors, not images)"))


def _load_index():
  from cbir_jax.index import load_index  # pylint: disable=import-outside-toplevel
  if not _INDEX.value:
    _fail("--index is required")
  return load_index(_INDEX.value)


def _search() -> None:
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  if not _INDEX.value:
    _fail("--index is required")
  _load_npy(_QUERIES)  # Exists and is a readable .npy.
  result = jobs.search_index_file(_INDEX.value, _QUERIES.value, _K.value, out=_OUT.value)
  if _OUT.value:
    print(f"wrote {', '.join(result)} ({result['I'].shape[0]} x {_K.value}) to {_OUT.value}")
  d, i = result["D"], result["I"]
  for row in range(min(_SHOW.value, i.shape[0])):
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
  try:
    {"build": _build, "search": _search, "info": _info}[argv[1]]()
  except (ValueError, TypeError, FileNotFoundError) as e:
    _fail(str(e))


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
