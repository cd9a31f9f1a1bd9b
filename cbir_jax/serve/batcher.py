"""Micro-batching: concurrent queries to one index answered by one forward pass and one search.

A `MicroBatcher` owns one worker thread. `submit(query)` puts a query on its queue and returns a
`concurrent.futures.Future`. The worker takes the first waiting query, then every query already
queued behind it (up to `max_batch`; optionally waiting `max_wait_s` for more), and hands the
list to `run_batch`, which answers all of them with one call. At concurrency 1 a query waits for
nobody; under load the queries that arrive while a batch is being computed form the next batch,
so the model and the index are swept once per batch instead of once per query.

`SearchBatch.run` is the `run_batch` of the search service: it stacks the images (or vectors) of
a batch, pads them to a fixed bucket size (1, 2, 4, ... max_batch) so that the forward pass and
the search compile once per bucket, searches with k rounded up to a bucket (then trims each
answer to its own k) and reports the time of each stage.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

# k is rounded up to one of these (or the index size) so that few search shapes are compiled.
K_BUCKETS = (10, 25, 50, 100, 250, 500, 1000)


class Busy(RuntimeError):
  """The queue of a batcher is full (the service answers 503)."""


def batch_buckets(max_batch: int) -> tuple[int, ...]:
  """Padded batch sizes: powers of two below `max_batch`, then `max_batch` itself."""
  if max_batch < 1:
    raise ValueError(f"max_batch must be >= 1, got {max_batch}")
  sizes, b = [], 1
  while b < max_batch:
    sizes.append(b)
    b *= 2
  return tuple(sizes) + (max_batch,)


def k_bucket(k: int, n: int) -> int:
  """The k searched for a request of k results in an index of n (>= k, <= n)."""
  return min(n, next((b for b in K_BUCKETS if b >= k), k))


class MicroBatcher:
  """One worker thread that answers queued items in batches (see module doc).

  Args:
    run_batch: list of items -> list of results (same length, same order); a result that is an
      Exception instance is raised to that item's submitter. An exception raised by `run_batch`
      itself goes to every item of the batch.
    max_batch: most items per call. max_wait_s: how long the worker waits for more items after
      the first (0: only those already queued). max_queue: items waiting beyond this -> `Busy`.
  """

  def __init__(self, run_batch: Callable[[list[Any]], list[Any]], *, max_batch: int = 8,
               max_wait_s: float = 0.0, max_queue: int = 1024, name: str = "batcher"):
    if max_batch < 1:
      raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if max_wait_s < 0:
      raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
    self._run_batch = run_batch
    self.max_batch = int(max_batch)
    self.max_wait_s = float(max_wait_s)
    self.max_queue = int(max_queue)
    self._queue: queue.Queue = queue.Queue()
    self._closed = False
    self.batches = 0          # calls of run_batch so far
    self.items = 0            # items answered so far
    self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
    self._thread.start()

  def submit(self, item: Any) -> concurrent.futures.Future:
    """Queues `item`; the future holds its result. Raises `Busy` when the queue is full."""
    if self._closed:
      raise RuntimeError("the batcher is closed")
    if self._queue.qsize() >= self.max_queue:
      raise Busy(f"{self._queue.qsize()} queries are waiting (at most {self.max_queue}); "
                 "try again shortly")
    future: concurrent.futures.Future = concurrent.futures.Future()
    self._queue.put((item, future, time.perf_counter()))
    return future

  def close(self) -> None:
    """Stops the worker after the items already queued."""
    if not self._closed:
      self._closed = True
      self._queue.put(None)
      self._thread.join()

  def _take(self) -> list | None:
    first = self._queue.get()
    if first is None:
      return None
    batch = [first]
    deadline = time.perf_counter() + self.max_wait_s
    while len(batch) < self.max_batch:
      remaining = deadline - time.perf_counter()
      try:
        entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
      except queue.Empty:
        break
      if entry is None:  # Closing: answer this batch, then stop.
        self._queue.put(None)
        break
      batch.append(entry)
    return batch

  def _loop(self) -> None:
    while True:
      batch = self._take()
      if batch is None:
        return
      started = time.perf_counter()
      items = [item for item, _, _ in batch]
      try:
        results = self._run_batch(items)
        if len(results) != len(items):
          raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
      except Exception as e:  # pylint: disable=broad-except
        results = [e] * len(items)  # The worker survives; every submitter sees the error.
      self.batches += 1
      self.items += len(items)
      for (_, future, queued), result in zip(batch, results):
        if isinstance(result, BaseException):
          future.set_exception(result)
        else:
          if isinstance(result, dict):
            result.setdefault("timings_ms", {})["queue"] = (started - queued) * 1e3
          future.set_result(result)


@dataclasses.dataclass
class Query:
  """One search request: an image uint8[h, w, c] or a query vector/code [d] / [words], and k."""
  k: int
  image: np.ndarray | None = None
  vector: np.ndarray | None = None


class SearchBatch:
  """`run_batch` for one searcher (an `ImageSearcher` or anything with its methods).

  Images and vectors in the same batch are searched as two groups. Each result is a dict:
  `distances` [k], `ids` int64 [k], `labels` int64 [k], `timings_ms` {forward, search},
  `batch` {size, padded_to}. A group whose batched search fails is retried one query at a
  time, so one bad query cannot fail the others.
  """

  def __init__(self, searcher: Any, max_batch: int, lock: threading.Lock | None = None):
    self.searcher = searcher
    self.buckets = batch_buckets(max_batch)
    self._lock = lock or threading.Lock()
    self._sorted_ids: np.ndarray | None = None     # every database id, sorted
    self._sorted_labels: np.ndarray | None = None  # their labels

  def labels(self, ids: np.ndarray) -> np.ndarray:
    """int64 labels of database ids from a table built once; -1 for a missing hit and for an id
    the index does not hold (the searcher's own `labels` raises for those)."""
    with self._lock:
      if self._sorted_ids is None:
        all_ids = np.asarray(self.searcher.index.ids)
        sorted_ids = np.sort(all_ids)
        self._sorted_labels = np.asarray(self.searcher.labels(sorted_ids), np.int64)
        self._sorted_ids = sorted_ids
    ids = np.asarray(ids)
    where = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
    found = (self._sorted_ids[where] == ids) & (ids >= 0)
    return np.where(found, self._sorted_labels[where], -1)

  def _bucket(self, q: int) -> int:
    return next(b for b in self.buckets if b >= q)

  def _search_group(self, queries: list[Query], stack: np.ndarray, embed: bool) -> list[dict]:
    n = len(self.searcher.index)
    q = len(queries)
    padded = self._bucket(q)
    if padded > q:  # Fixed shapes: pad with copies of the first row, trim the answers.
      stack = np.concatenate([stack, np.repeat(stack[:1], padded - q, axis=0)])
    k = k_bucket(max(query.k for query in queries), n)
    t0 = time.perf_counter()
    if embed:
      if hasattr(self.searcher, "batch_size"):
        self.searcher.batch_size = padded  # ImageSearcher: the forward pass runs `padded` rows.
      vectors = self.searcher.embed(stack)
    else:
      vectors = stack
    t1 = time.perf_counter()
    distances, ids = self.searcher.search_vectors(vectors, k)
    t2 = time.perf_counter()
    labels = self.labels(ids[:q])
    timings = {"forward": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3}
    return [{"distances": distances[i, :query.k], "ids": ids[i, :query.k],
             "labels": labels[i, :query.k], "timings_ms": dict(timings),
             "batch": {"size": q, "padded_to": padded}}
            for i, query in enumerate(queries)]

  def _group(self, queries: list[Query], embed: bool) -> list:
    rows = [query.image if embed else query.vector for query in queries]
    try:
      return self._search_group(queries, np.stack(rows), embed)
    except Exception:  # pylint: disable=broad-except
      if len(queries) == 1:
        raise
    out = []  # One at a time: only the bad query fails.
    for query, row in zip(queries, rows):
      try:
        out.extend(self._search_group([query], row[None], embed))
      except Exception as e:  # pylint: disable=broad-except
        out.append(e)
    return out

  def run(self, queries: Sequence[Query]) -> list:
    """Answers `queries` (see class doc); errors come back as Exception results."""
    results: list = [None] * len(queries)
    for embed in (True, False):
      members = [i for i, query in enumerate(queries) if (query.image is not None) == embed]
      if not members:
        continue
      try:
        answers = self._group([queries[i] for i in members], embed)
      except Exception as e:  # pylint: disable=broad-except
        answers = [e] * len(members)
      for i, answer in zip(members, answers):
        results[i] = answer
    return results

  def warmup(self, k: int) -> None:
    """Compiles the forward pass and the search for every bucket size (images of zeros)."""
    self.labels(np.zeros(1, np.int64))  # builds the label table
    image = np.zeros(tuple(self.searcher.image_shape), np.uint8)
    for b in self.buckets:
      self._search_group([Query(k=k, image=image)] * b, np.stack([image] * b), True)
