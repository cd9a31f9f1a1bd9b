"""Query by image: an index, its provenance, the network(s) and preprocessing loaded once.

`ImageSearcher.open(index_path)` reads an index written by any of the project's paths (the demo,
`bin/reproduce.py`, or the CLI chain extract -> hash -> index build), rebuilds from its
provenance record (`cbir_jax.features.provenance`) the network(s) that produced its vectors, the
image size the database was resized to, the fusion and, for a binary index, the hash encoder, and
then answers `search(images, k)` for as many calls as needed: the launcher `bin/search.py` and
the search service (`cbir_jax.serve`) both use it. `search_images` is the launcher's job:
rankings of image files written as JSON, CSV and a contact sheet.

Launcher-level: nothing in the library imports this module.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np

from cbir_jax import atomic
from cbir_jax.data import datasets
from cbir_jax.data import images as images_lib
from cbir_jax.eval import plots
from cbir_jax.eval.protocol import ids_to_positions
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import fuse as fuse_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.index import BinaryIndex, FloatIndex, load_index
from cbir_jax.kernels import expansion as expansion_lib
from cbir_jax.kernels.topk import check_k


def _restore(source: provenance_lib.Source, train_workdir: str | None, weights: str | None,
             weights_format: str | None = None):
  """(model, variables, preprocess) of one provenance source (the overrides win)."""
  from cbir_jax import jobs  # pylint: disable=import-outside-toplevel
  if weights or (source.weights and not train_workdir):
    record = source.weights or {}
    run = jobs.import_weights(weights or record["path"], source.model,
                              format=weights_format if weights else record.get("format"))
  else:
    run = jobs.restore(train_workdir or source.train_workdir,
                       None if train_workdir else source.checkpoint_step)
  return run.model, run.variables, run.preprocess


class ExpandedSearch:
  """Search-time alpha query expansion over a float index (`cbir_jax.kernels.expansion`).

  Each query becomes unit(unit(q) + sum_i max(cos_i, 0)**alpha unit(x_i)) over its `k_expand`
  nearest database vectors, and is searched against the database's unit rows: a cosine index
  (`FloatIndex(normalize=True)`, e.g. a DBA-augmented one from `cbir-index augment`) is used as
  it is; otherwise a second, L2-normalised copy of the vectors is built once (memory 2x the
  float32 vectors). Distances are squared L2 between unit vectors (2 - 2 cos), ids the index's.
  A binary index is refused: the expansion adds real vectors.
  """

  def __init__(self, index: FloatIndex | BinaryIndex, k_expand: int, alpha: float = 3.0):
    if not isinstance(index, FloatIndex):
      raise ValueError("query expansion needs a float index (exact Euclidean over float "
                       f"vectors); got a {type(index).__name__}")
    self.k_expand = expansion_lib.check_neighbours(k_expand, len(index), "query expansion")
    self.alpha = float(alpha)
    expansion_lib.check_alpha(self.alpha)
    if index.normalize:  # Unit rows already: no copy.
      self.unit_index = index
    else:
      self.unit_index = FloatIndex(index.dim, chunk_size=index.chunk_size, normalize=True)
      self.unit_index.add(index.vectors, ids=index.ids)
    self._units = self.unit_index.unit_vectors()

  def __len__(self) -> int:
    return len(self.unit_index)

  def expand(self, queries: np.ndarray) -> np.ndarray:
    """float32[q, d] expanded unit query vectors; ValueError for a bad shape or NaN / inf
    (named as the index's own search names them)."""
    queries = self.unit_index._check(queries, "q")  # pylint: disable=protected-access
    return np.asarray(expansion_lib.alpha_query_expansion(
        queries, self._units, self.k_expand, alpha=self.alpha,
        chunk_size=self.unit_index.chunk_size))

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(D[q, k], ids int64[q, k]) of the expanded queries among the unit database rows."""
    check_k(k, len(self))
    return self.unit_index.search(self.expand(queries), k)


class ImageSearcher:
  """Loads an index, its provenance, the network(s) and preprocessing once (see module doc).

  Attributes:
    index: the FloatIndex or BinaryIndex.
    kind: "float" or "binary".
    provenance: the index's provenance record.
    image_shape: (h, w, c) every query image is decoded and resized to.
    class_names: label names, or None when the index does not know them.
  """

  def __init__(self, index: FloatIndex | BinaryIndex, record: provenance_lib.Provenance,
               networks: list[tuple[Any, Any, Callable | None]], image_shape: tuple[int, int, int],
               *, batch_size: int = 64, index_path: str = "", expand: int = 0,
               expand_alpha: float = 3.0):
    self.index = index
    # expand > 0: search-time alpha query expansion over that many neighbours (ExpandedSearch).
    self._expanded = ExpandedSearch(index, expand, expand_alpha) if expand else None
    self.kind = "binary" if isinstance(index, BinaryIndex) else "float"
    self.provenance = record
    self.image_shape = tuple(int(s) for s in image_shape)
    self.batch_size = int(batch_size)
    self.index_path = index_path
    self._networks = networks
    self._encoder = None
    if self.kind == "binary":
      self._encoder = _encoder_from_record(record.encoder)
    meta = index.metadata
    self.class_names: list[str] | None = meta.get("class_names") or (
        record.dataset or {}).get("class_names")
    self._labels_by_position: np.ndarray | None = None
    if meta.get("labels") is not None:
      self._labels_by_position = np.asarray(meta["labels"], np.int64)
    self._database: datasets.ImageArrays | None = None
    self._ids: np.ndarray | None = None
    self._id_order: np.ndarray | None = None

  # ------------------------------------------------------------------------------- loading
  @classmethod
  def open(cls, index_path: str, *, train_workdir: str | None = None,
           weights: str | None = None, weights_format: str | None = None,
           batch_size: int = 64, expand: int = 0, expand_alpha: float = 3.0
           ) -> "ImageSearcher":
    """Loads `index_path` and what its provenance names; `train_workdir` / `weights` replace
    the recorded model of a single-network index (e.g. a moved run folder); `expand` > 0
    searches with alpha query expansion over that many neighbours (`ExpandedSearch`)."""
    index = load_index(index_path)
    record = provenance_lib.from_metadata(index.metadata)
    if record is None:
      raise ValueError(
          f"index {index_path!r} records no provenance (it was built from bare vectors), so it "
          "cannot be searched with images: search it with query vectors (cbir-search "
          "--query_features, cbir-index search), or build it with cbir-demo, cbir-reproduce or "
          "cbir-extract -> [cbir-hash ->] cbir-index build, which record the model and data set")
    if (train_workdir or weights) and len(record.sources) != 1:
      raise ValueError(f"--train_workdir/--weights replace the model of a single-network index;"
                       f" {index_path!r} fuses {len(record.sources)} networks")
    if train_workdir or weights:
      source = record.sources[0]
      record = dataclasses.replace(record, sources=[dataclasses.replace(
          source, train_workdir=train_workdir or source.train_workdir,
          weights={"path": weights} if weights else source.weights)])
    missing = record.missing_for_image_search(isinstance(index, BinaryIndex))
    if missing:
      raise ValueError(f"index {index_path!r} cannot be searched with images: its provenance "
                       f"lacks {'; '.join(missing)}")
    networks = [_restore(s, train_workdir, weights, weights_format) for s in record.sources]
    ds = record.dataset
    shape = ds.get("image_shape")
    searcher = cls(index, record, networks, (0, 0, 0), batch_size=batch_size,
                   index_path=index_path, expand=expand, expand_alpha=expand_alpha)
    if shape is None:  # Older records: the database images tell the shape.
      shape = searcher._database_arrays().images.shape[1:]
    searcher.image_shape = tuple(int(s) for s in shape)
    return searcher

  def _database_arrays(self) -> datasets.ImageArrays:
    if self._database is None:
      ds = self.provenance.dataset
      self._database = datasets.load_split(ds, ds["split"], seed=int(ds.get("seed", 0)),
                                           carve_validation=False)
    return self._database

  # ------------------------------------------------------------------------------- queries
  def decode(self, data: bytes) -> np.ndarray:
    """Image file bytes -> uint8[h, w, c] resized and converted like the database images.

    Raises:
      ValueError: empty, truncated or undecodable data (the message says which).
    """
    return decode_image(data, self.image_shape)

  def features(self, images: np.ndarray) -> np.ndarray:
    """uint8[q, h, w, c] -> float32[q, d]: the (fused) float vectors of the index's space."""
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(f"images must have shape (q, {', '.join(map(str, self.image_shape))}), "
                       f"got {images.shape}")
    shapes = (self.provenance.fusion or {}).get("image_shapes") or [None] * len(self._networks)
    parts = []
    for (model, variables, preprocess), source, shape in zip(
        self._networks, self.provenance.sources, shapes):
      x = images
      if shape is not None and tuple(shape) != self.image_shape:
        # A fused part trained at another size (seed 000: LeNet-L at 384x256, AlexNet at
        # 227x227) sees the query resized once more from the first part's size.
        x = np.stack([decode_shape(image, shape) for image in images])
      parts.append(extract_lib.extract(model, variables, x, source.endpoint,
                                       batch_size=self.batch_size, progress=False,
                                       preprocess=preprocess))
    if len(parts) == 1:
      return parts[0]
    fusion = self.provenance.fusion or {}
    return fuse_lib.fuse(parts, normalize=fusion.get("normalize", "none"),
                         weights=fusion.get("weights"))

  def embed(self, images: np.ndarray) -> np.ndarray:
    """uint8[q, h, w, c] -> the index's query vectors: float32[q, d] or uint32[q, words]."""
    feats = self.features(images)
    if self._encoder is None:
      return feats
    if self._encoder.dim is None:  # A legacy record learns d from the first features.
      self._encoder = self._encoder.finish(feats.shape[1])
    return self._encoder.encode(feats)

  def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(D[q, k], ids int64[q, k]) of query vectors or codes; ValueError for bad k or input.
    With query expansion: `ExpandedSearch.search` (distances between unit vectors)."""
    if self._expanded is not None:
      return self._expanded.search(queries, k)
    return self.index.search(queries, k)

  def search(self, images: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(D[q, k], ids int64[q, k]) of uint8[q, h, w, c] images (`embed` + `search_vectors`)."""
    check_k(k, len(self.index))
    return self.search_vectors(self.embed(images), k)

  def warmup(self, batch_sizes: Sequence[int] = (1,), k: int = 1) -> None:
    """Compiles the forward pass and the search for these query batch sizes."""
    for b in batch_sizes:
      self.search(np.zeros((int(b),) + self.image_shape, np.uint8), min(k, len(self.index)))

  # ------------------------------------------------------------------------------- results
  def positions(self, ids: np.ndarray) -> np.ndarray:
    """Database positions (index order) of ids; the ids are sorted once per searcher."""
    if self._id_order is None:
      self._ids = np.asarray(self.index.ids)
      self._id_order = np.argsort(self._ids, kind="stable")
    return ids_to_positions(self._ids, ids, order=self._id_order)

  def labels(self, ids: np.ndarray) -> np.ndarray:
    """int64 labels of database ids (-1 where unknown)."""
    ids = np.asarray(ids)
    if self._labels_by_position is None:
      try:
        arrays = self._database_arrays()
      except (ValueError, FileNotFoundError) as e:
        logging.warning("labels unknown: %s", e)
        return np.full(ids.shape, -1, np.int64)
      self._labels_by_position = arrays.labels[ids_to_positions(arrays.ids, self.index.ids)]
      if self.class_names is None:
        self.class_names = list(arrays.class_names)
    out = np.full(ids.shape, -1, np.int64)  # -1: a missing hit (id -1) has no label
    hit = ids >= 0
    out[hit] = self._labels_by_position[self.positions(ids[hit])]
    return out

  def image(self, image_id: int) -> np.ndarray | None:
    """The database image with id `image_id` (uint8[h, w, c]) when the data set can be loaded."""
    try:
      arrays = self._database_arrays()
    except (ValueError, FileNotFoundError, KeyError, TypeError):
      return None
    where = np.searchsorted(arrays.ids, image_id)
    if where >= len(arrays.ids) or arrays.ids[where] != image_id:
      return None
    return arrays.images[where]


def _encoder_from_record(state: dict[str, Any] | None):
  if state is None:
    raise ValueError("a binary index needs its hash encoder in the provenance record")
  if "legacy_feature_order" in state:
    return _LegacyEncoder(state["legacy_feature_order"], state["legacy_hasher"])
  return encoder_lib.HashEncoder.from_state(state)


@dataclasses.dataclass
class _LegacyEncoder:
  """The demo's pre-provenance metadata (kept dimensions + hasher); d is learnt on first use."""
  feature_order: list[int]
  hasher: dict[str, Any]
  dim: int | None = None

  def finish(self, dim: int) -> encoder_lib.HashEncoder:
    return encoder_lib.HashEncoder.from_legacy(self.feature_order, self.hasher, dim)


# ----------------------------------------------------------------------------- the launcher job


@dataclasses.dataclass
class QueryResult:
  """Ranked database matches of query images (FAISS order: distances, then ids)."""
  paths: list[str]            # the query files that were read, in order
  skipped: list[str]          # "path: reason" for files that could not be read
  distances: np.ndarray       # [q, k] squared L2 (float index) or Hamming (binary index)
  ids: np.ndarray             # int64 [q, k] database ids
  labels: np.ndarray          # int64 [q, k] database labels (-1 unknown)
  class_names: list[str]
  files: dict[str, str]


def list_query_files(query: str) -> list[str]:
  """One image file, or every image file in a folder (sorted); clear errors otherwise."""
  if os.path.isdir(query):
    files = sorted(os.path.join(query, f) for f in os.listdir(query)
                   if images_lib.is_image_file(f) and os.path.isfile(os.path.join(query, f)))
    if not files:
      raise ValueError(f"query folder {query!r} holds no image files "
                       f"(looked for {', '.join(images_lib.IMAGE_EXTENSIONS)})")
    return files
  if not os.path.exists(query):
    raise FileNotFoundError(f"query {query!r} does not exist")
  return [query]


def decode_image(data: bytes, image_shape: Sequence[int] | None = None) -> np.ndarray:
  """Image file bytes -> uint8[h, w, c]: RGB (CMYK, 16-bit, alpha, palette converted), resized
  to `image_shape` (h, w, c) and turned grey for c = 1; None keeps the native RGB image.

  Raises:
    ValueError: empty, truncated or undecodable data (the message says which).
  """
  if not data:
    raise ValueError("empty file (0 bytes)")
  try:
    image = images_lib.decode_rgb(data)
  except (OSError, SyntaxError) as e:
    raise ValueError(str(e)) from e
  return image if image_shape is None else decode_shape(image, image_shape)


def decode_shape(image: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
  """A decoded uint8[h, w, c] image resized / turned grey to `image_shape` (h, w, c)."""
  h, w, c = (int(s) for s in image_shape)
  if image.shape[:2] != (h, w):
    image = images_lib.resize(image, (h, w))
  if c == 1 and image.shape[-1] != 1:
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    image = np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None]
  elif c == 3 and image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image


def read_query_images(paths: list[str], image_shape: Sequence[int] | None
                      ) -> tuple[np.ndarray, list[str], list[str]]:
  """(uint8[q, h, w, c], paths read, "path: reason" skipped) decoded with `decode_image`.

  Unreadable and empty files are skipped with their reason; none readable -> ValueError listing
  the reasons; native-size images (image_shape None) of different sizes -> ValueError.
  """
  out, kept, skipped = [], [], []
  for path in paths:
    try:
      with open(path, "rb") as f:
        out.append(decode_image(f.read(), image_shape))
      kept.append(path)
    except (OSError, ValueError) as e:
      skipped.append(f"{path}: {e}")
      logging.warning("skipping query %s: %s", path, e)
  if not out:
    raise ValueError("no query image could be read: " + "; ".join(skipped))
  shapes = {im.shape for im in out}
  if len(shapes) > 1:
    raise ValueError(f"query images differ in size {sorted(shapes)} and no image size was given "
                     "to resize them to")
  return np.stack(out), kept, skipped


def search_images(index_path: str, query: str, k: int, out_dir: str, *, batch_size: int = 64,
                  train_workdir: str | None = None, weights: str | None = None,
                  weights_format: str | None = None, expand: int = 0,
                  expand_alpha: float = 3.0) -> QueryResult:
  """Query-by-image: the photos in `query` (file or folder) searched in an index (with alpha
  query expansion over `expand` neighbours when > 0; float indexes only).

  Writes `ranking.json`, `ranking.csv` and `contact_sheet.png` (queries with their ranked
  results; database thumbnails when the data set can be loaded) into `out_dir`.
  """
  searcher = ImageSearcher.open(index_path, train_workdir=train_workdir, weights=weights,
                                weights_format=weights_format, batch_size=batch_size,
                                expand=expand, expand_alpha=expand_alpha)
  check_k(k, len(searcher.index))
  images, paths, skipped = read_query_images(list_query_files(query), searcher.image_shape)
  distances, ids = searcher.search(images, k)
  labels = searcher.labels(ids)
  names = searcher.class_names or []
  name_of = lambda label: names[label] if 0 <= label < len(names) else ""
  os.makedirs(out_dir, exist_ok=True)
  files = {"json": os.path.join(out_dir, "ranking.json"),
           "csv": os.path.join(out_dir, "ranking.csv")}
  rows = [{"query": path, "rank": r + 1, "id": int(ids[i, r]),
           "distance": float(distances[i, r]), "label": int(labels[i, r]),
           "class": name_of(int(labels[i, r]))}
          for i, path in enumerate(paths) for r in range(k)]
  atomic.write_json(files["json"], {"index": os.path.abspath(index_path), "k": k,
                                     "expansion": ({"k": expand, "alpha": expand_alpha}
                                                   if expand else None),
                                     "skipped": skipped, "results": rows})
  table = io.StringIO()
  writer = csv.DictWriter(table, fieldnames=["query", "rank", "id", "distance", "label", "class"])
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(files["csv"], table.getvalue())
  try:
    database = searcher._database_arrays()  # pylint: disable=protected-access
  except (ValueError, FileNotFoundError) as e:
    logging.warning("no contact sheet: the database images cannot be loaded (%s)", e)
  else:
    positions = ids_to_positions(database.ids, ids)
    files["sheet"] = plots.contact_sheet(
        os.path.join(out_dir, "contact_sheet.png"), images, np.full(len(paths), -1),
        database.images[positions], labels, distances, ids, class_names=names or None,
        title=f"{os.path.basename(index_path)}: top {k} of {len(searcher.index)}")
  return QueryResult(paths, skipped, distances, ids, labels, list(names), files)


def search_in_batches(index: FloatIndex | BinaryIndex | ExpandedSearch, queries: np.ndarray,
                      k: int, batch_size: int, on_batch: Callable[[int], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Serves `queries` (float[q, d] or uint32[q, w]) `batch_size` at a time, like a server loop.

  Every batch has the same shape (the last is padded with copies of the first query and trimmed),
  so the search compiles once and memory stays flat however many queries are served. Calls
  `on_batch(queries_done)` after each batch. Returns (D[q, k], I[q, k]) as `index.search`.
  """
  q = len(queries)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if q == 0:
    raise ValueError("no queries to search (got 0 rows)")
  check_k(k, len(index))
  distances, ids = [], []
  for start in range(0, q, batch_size):
    block = queries[start:start + batch_size]
    m = len(block)
    if m < batch_size:
      block = np.concatenate([block, np.repeat(block[:1], batch_size - m, axis=0)])
    d, i = index.search(block, k)
    distances.append(d[:m])
    ids.append(i[:m])
    if on_batch is not None:
      on_batch(start + m)
  return np.concatenate(distances), np.concatenate(ids)


@dataclasses.dataclass
class ServedQueries:
  queries: int
  index_size: int
  rss_mib: dict[str, float]   # "start", "warm" (after the first batch), "end"
  path: str                   # ranking.npz with D and I


def _rss_mib() -> float:
  """Current resident set size of this process in MiB (Linux /proc; else peak via resource)."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
  except OSError:
    import resource  # pylint: disable=import-outside-toplevel
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve_query_file(index_path: str, queries_path: str, k: int, out_dir: str, *,
                     batch_size: int = 100, progress: bool = False, expand: int = 0,
                     expand_alpha: float = 3.0) -> ServedQueries:
  """Searches a .npy of query vectors (or codes) `batch_size` at a time like a server loop
  (`search_in_batches`; with alpha query expansion over `expand` neighbours when > 0),
  recording resident memory at the start, after the first batch and at the end; writes
  `out_dir/ranking.npz` (D, I) atomically."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  index = load_index(index_path)
  if expand:
    index = ExpandedSearch(index, expand, expand_alpha)
  queries = np.load(queries_path, mmap_mode="r")
  rss = {"start": _rss_mib()}
  bar = tqdm(total=len(queries), unit="query", disable=not progress)

  def on_batch(done: int) -> None:
    if "warm" not in rss:
      rss["warm"] = _rss_mib()  # After the first batch: index on device, search compiled.
    bar.update(done - bar.n)

  try:
    distances, ids = search_in_batches(index, np.asarray(queries), k, batch_size, on_batch)
  finally:
    bar.close()
  rss["end"] = _rss_mib()
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "ranking.npz")
  with atomic.atomic_write(path, "wb") as f:
    np.savez(f, D=distances, I=ids)
  return ServedQueries(len(queries), len(index), rss, path)
