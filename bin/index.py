"""Build, search and inspect exact indexes from .npy files.

  python bin/index.py build --features=feats.npy [--ids=ids.npy] [--labels=labels.npy] \
      [--nbits=48] [--metadata=model=lenet_l] --out=db.cbiridx
  # Straight from images, streaming (a folder of any size, or a tfds set stored as ArrayRecord):
  python bin/index.py build --images=photos/ --train_workdir=runs/digits --endpoint=f6 \
      --out=photos.cbiridx [--encoder=codes/encoder.json --codes_out=photos_codes.cbiridx]
  python bin/index.py build --images=photos/ --weights=alexnet.safetensors --model=alexnet \
      --endpoint=fc7 --image_size=227 --out=photos.cbiridx
  python bin/index.py search --index=db.cbiridx --queries=q.npy --k=10 [--out=result.npz]
  python bin/index.py info --index=db.cbiridx
  # Database-side augmentation: each vector re-described by its 3 nearest (itself included):
  python bin/index.py augment --index=db.cbiridx --k=3 [--alpha=3] --out=db_dba.cbiridx

`build` makes a FloatIndex from float features (n, d), or a BinaryIndex from uint32 codes
(n, ceil(nbits / 32)) or bool bits (n, nbits), packed with kernels.bits.pack_bits. Labels, when
given, go into the index metadata under "labels"; ids and labels default to the features'
`.ids.npy` / `.labels.npy` sidecars. The provenance record of the features' `.json` sidecar
(written by `extract` and `hash`: model, endpoint, run, data set, hash encoder) goes into the
metadata too, so `cbir-search --query=photo.jpg` works on the index (`cbir_jax.jobs.build_index`);
several --features files of the same images are fused into one descriptor (--fusion). `search`
writes D, I (user ids) and, when the index has labels, L (labels of the hits) to --out as .npz,
and prints the first rows.

`augment` (`cbir_jax.jobs.augment_index`) writes a float index's database-side augmentation
(DBA, `kernels.database_augmentation`) as a new cosine index: unit rows, queries L2-normalised
by every search of it; ids, labels and provenance are kept, so it is searched by image like its
source (`cbir-search --index=db_dba.cbiridx --query=photo.jpg`, with `--expand=N` for alpha query
expansion on top). --k counts the vector itself; the source file is left as it was.

`build --images` (`cbir_jax.jobs.streaming`) decodes the images in grain threads, extracts on
every local device and writes the features of each --chunk_size images to <out>.parts/; killed
and run again with the same flags it resumes from the last complete chunk, and the index is
the one an uninterrupted build writes. Unreadable files are skipped and listed (metadata
"skipped"). On N processes (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or a
cluster jax.distributed detects) each process reads its chunks and process 0 merges them; the
images and <out>.parts/ must then be on a file system every host sees.
"""

import json
import os

from absl import app, flags
import numpy as np

from cbir_jax._bin import launch

COMMANDS = ("build", "search", "info", "augment")

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
_OUT = flags.DEFINE_string("out", None, "build/augment: index file to write; search: optional "
                           ".npz.")
_INDEX = flags.DEFINE_string("index", None, "search/info/augment: index file to read.")
_QUERIES = flags.DEFINE_string("queries", None, "search: .npy of queries, same kind as the "
                               "index (float, uint32 codes or bool bits).")
_K = flags.DEFINE_integer("k", 10, "search: results per query; augment: neighbours summed per "
                          "vector, itself included.")
_ALPHA = flags.DEFINE_float("alpha", 3.0, "augment: the weight exponent of the neighbours' "
                            "cosine similarities (0: plain average).")
_SHOW = flags.DEFINE_integer("show", 5, "search: query rows to print.")
_IMAGES = flags.DEFINE_string("images", None, "build, instead of --features: a folder of images "
                              "(root/<class>/<image>, or images directly in it) or the name of a "
                              "tfds data set (any registered one, or ours: corel1k, "
                              "cifar10_local, caltech256) prepared in --data_dir with "
                              "file_format='array_record'.")
_SPLIT = flags.DEFINE_string("split", "train", "build --images=<tfds name>: the split to index.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "build --images=<tfds name>: tfds data_dir.")
_TRAIN_WORKDIR = flags.DEFINE_string("train_workdir", None, "build --images: the training run "
                                     "whose network extracts the features (or --weights).")
_STEP = flags.DEFINE_integer("step", None, "build --images --train_workdir: checkpoint step; "
                             "default the newest.")
_WEIGHTS = flags.DEFINE_string("weights", None, "build --images: imported weights (.pth, "
                               ".safetensors, .h5) of --model instead of a training run.")
_WEIGHTS_FORMAT = flags.DEFINE_enum("weights_format", None, ["torch", "safetensors", "keras"],
                                    "Format of --weights when its extension does not say.")
_MODEL = flags.DEFINE_string("model", None, "build --images --weights: alexnet, resnet50, "
                             "mobilenet_v2 or inception_v3.")
_ENDPOINT = flags.DEFINE_string("endpoint", None, "build --images: the model endpoint, e.g. f6 "
                                "(LeNet-L), fc7 (AlexNet), pool.")
_IMAGE_SIZE = flags.DEFINE_list("image_size", None, "build --images: resize to this side (or "
                                "h,w); default the training run's input size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "build --images: images per forward pass "
                                   "(a multiple of the number of local devices).")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 8192, "build --images: images per chunk file, "
                                   "the most work a kill loses (a multiple of --batch_size).")
_DECODE_THREADS = flags.DEFINE_integer("decode_threads", 4, "build --images: grain threads that "
                                       "read, decode and resize images.")
_ENCODER = flags.DEFINE_string("encoder", None, "build --images: a fitted hash encoder "
                               "(encoder.json of cbir-hash); codes go to --codes_out.")
_CODES_OUT = flags.DEFINE_string("codes_out", None, "build --images --encoder: the BinaryIndex "
                                 "of the codes to write.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"], "build --images: "
                                 "jax.distributed (auto: when the JAX_* variables or a cluster "
                                 "say so).")


def _fail(message: str) -> None:
  launch.fail("index", message)


def _load_npy(flag: flags.FlagHolder, required: bool = True) -> np.ndarray | None:
  if flag.value is None:
    if required:
      _fail(f"--{flag.name} is required")
    return None
  return launch.load_npy("index", flag.name, flag.value)


def _image_size() -> tuple[int, int] | None:
  if _IMAGE_SIZE.value is None:
    return None
  try:
    size = [int(v) for v in _IMAGE_SIZE.value]
  except ValueError:
    size = []
  if len(size) not in (1, 2) or min(size) < 1:
    _fail(f"--image_size must be a positive int or h,w, got {','.join(_IMAGE_SIZE.value)!r}")
  return (size[0], size[-1])


def _build_streaming() -> None:
  if bool(_TRAIN_WORKDIR.value) == bool(_WEIGHTS.value):
    _fail("build --images needs --train_workdir (a training run) or --weights, not both")
  if not _ENDPOINT.value:
    _fail("build --images needs --endpoint")
  if _WEIGHTS.value and not _MODEL.value:
    _fail("--weights needs --model (alexnet, resnet50, mobilenet_v2 or inception_v3)")
  if bool(_ENCODER.value) != bool(_CODES_OUT.value):
    _fail("--encoder and --codes_out go together")
  for name, flag in (("batch_size", _BATCH_SIZE), ("chunk_size", _CHUNK_SIZE),
                     ("decode_threads", _DECODE_THREADS)):
    if flag.value < 1:
      _fail(f"--{name} must be >= 1, got {flag.value}")
  size = _image_size()
  from cbir_jax.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  mesh_lib.initialize_distributed(_DISTRIBUTED.value)  # Before anything touches the devices.
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  from cbir_jax.data import sources  # pylint: disable=import-outside-toplevel
  from cbir_jax.features import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from cbir_jax.jobs import streaming  # pylint: disable=import-outside-toplevel
  if os.path.isdir(_IMAGES.value):
    source = sources.ImageFolderSource(_IMAGES.value)
    dataset = {"name": "image_folder", "split": "all", "manual_dir": source.root,
               "data_dir": None, "seed": 0}
  elif os.sep in _IMAGES.value or os.path.exists(_IMAGES.value):
    _fail(f"--images {_IMAGES.value!r} is not a folder (nor a tfds data set name)")
  else:
    source = sources.TfdsSource(_IMAGES.value, _SPLIT.value, data_dir=_DATA_DIR.value)
    dataset = {"name": _IMAGES.value, "split": _SPLIT.value, "manual_dir": None,
               "data_dir": _DATA_DIR.value, "seed": 0}
  encoder = None
  if _ENCODER.value:
    with open(_ENCODER.value) as f:
      encoder = encoder_lib.HashEncoder.from_state(json.load(f))
  run = (jobs.restore(_TRAIN_WORKDIR.value, _STEP.value) if _TRAIN_WORKDIR.value else
         jobs.import_weights(_WEIGHTS.value, _MODEL.value, format=_WEIGHTS_FORMAT.value))
  built = streaming.build_index_streaming(
      run, _ENDPOINT.value, source, _OUT.value, image_shape=streaming.input_shape_of(run, size),
      dataset=dataset, chunk_size=_CHUNK_SIZE.value, batch_size=_BATCH_SIZE.value,
      encoder=encoder, codes_out=_CODES_OUT.value, num_threads=_DECODE_THREADS.value)
  if built.index is None:
    print(f"computed {built.computed} images of this process's chunks; process 0 merged them")
    return
  resumed = f", resumed {built.resumed_chunks} chunk(s)" if built.resumed_chunks else ""
  print(f"wrote FloatIndex with {len(built.index)} rows to {_OUT.value} ({len(built.skipped)} "
        f"unreadable image(s) skipped{resumed})")
  for path in built.skipped[:20]:
    print(f"  skipped {path}")
  if built.codes_index is not None:
    print(f"wrote BinaryIndex with {len(built.codes_index)} rows to {_CODES_OUT.value}")


def _build() -> None:
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  if not _OUT.value:
    _fail("--out is required for build")
  if _IMAGES.value and _FEATURES.value:
    _fail("give --features (saved vectors) or --images (extract while building), not both")
  if _IMAGES.value:
    _build_streaming()
    return
  if not _FEATURES.value:
    _fail("--features or --images is required for build")
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


def _augment() -> None:
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  if not _INDEX.value:
    _fail("--index is required")
  if not _OUT.value:
    _fail("--out is required for augment")
  index = jobs.augment_index(_INDEX.value, _OUT.value, _K.value, alpha=_ALPHA.value)
  print(f"wrote the DBA of {_INDEX.value} (k={_K.value}, alpha={_ALPHA.value:g}) to {_OUT.value}:"
        f" a cosine FloatIndex with {len(index)} rows (queries are L2-normalised)")


def _info() -> None:
  from cbir_jax.index import FloatIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import storage  # pylint: disable=import-outside-toplevel
  index = _load_index()
  shape = f"dim={index.dim}" if isinstance(index, FloatIndex) else (
      f"nbits={index.nbits} words={index.words} method={index.method}")
  if isinstance(index, FloatIndex) and index.normalize:
    shape += " (cosine: unit rows, queries L2-normalised)"
  print(f"{_INDEX.value}: {type(index).__name__}, {len(index)} rows, {shape}, "
        f"format v{storage.FORMAT_VERSION}, {os.path.getsize(_INDEX.value)} bytes")
  for key, value in sorted(index.metadata.items()):
    text = f"[{len(value)} values]" if isinstance(value, list) else repr(value)
    print(f"  {key}: {text}")


def main(argv) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    _fail(f"usage: index.py {{{'|'.join(COMMANDS)}}} --flags; got {argv[1:]}")
  try:
    {"build": _build, "search": _search, "info": _info, "augment": _augment}[argv[1]]()
  except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
    _fail(str(e))


def run() -> None:
  launch.ensure_malloc_tuning()  # XLA:CPU's buffers on huge pages (build --images extracts).
  app.run(main)


if __name__ == "__main__":
  run()
