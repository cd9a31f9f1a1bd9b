"""Micro-batching: queued queries are answered together, padded to bucket sizes, and one bad
query does not fail the others. Nothing is timed: the worker is held with events."""

import threading
import time

import numpy as np
import pytest

from cbir_jax.serve import batcher
from tests.serve.conftest import FakeSearcher


def test_buckets_and_k_buckets():
  assert batcher.batch_buckets(8) == (1, 2, 4, 8)
  assert batcher.batch_buckets(6) == (1, 2, 4, 6)
  assert batcher.batch_buckets(1) == (1,)
  with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
    batcher.batch_buckets(0)
  assert batcher.k_bucket(3, 40) == 10 and batcher.k_bucket(11, 40) == 25
  assert batcher.k_bucket(30, 40) == 40 and batcher.k_bucket(5000, 10**6) == 5000


def test_queries_waiting_behind_a_batch_form_the_next_batch():
  release = threading.Event()
  first_started = threading.Event()
  calls = []

  def run(items):
    calls.append(list(items))
    if len(calls) == 1:
      first_started.set()
      release.wait(30)
    return [item * 10 for item in items]

  b = batcher.MicroBatcher(run, max_batch=4)
  try:
    first = b.submit(1)
    assert first_started.wait(30)
    rest = [b.submit(i) for i in range(2, 8)]  # 6 queued while the first batch runs
    release.set()
    assert first.result(30) == 10
    assert [f.result(30) for f in rest] == [20, 30, 40, 50, 60, 70]
    assert calls == [[1], [2, 3, 4, 5], [6, 7]]
    assert b.batches == 3 and b.items == 7
  finally:
    release.set()
    b.close()


def test_errors_reach_their_submitters_and_the_worker_survives():
  def run(items):
    if "boom" in items:
      raise RuntimeError("whole batch failed")
    return [ValueError(f"bad {i}") if i < 0 else i for i in items]

  b = batcher.MicroBatcher(run, max_batch=1)
  try:
    with pytest.raises(ValueError, match="bad -1"):
      b.submit(-1).result(30)
    with pytest.raises(RuntimeError, match="whole batch failed"):
      b.submit("boom").result(30)
    assert b.submit(5).result(30) == 5
  finally:
    b.close()


def test_full_queue_is_busy():
  release = threading.Event()
  b = batcher.MicroBatcher(lambda items: (release.wait(30), items)[1], max_batch=1, max_queue=2)
  try:
    futures = [b.submit(0)]
    for _ in range(30_000):  # until the worker has taken item 0 (at most ~30 s)
      if not b._queue.qsize():  # pylint: disable=protected-access
        break
      time.sleep(0.001)
    futures += [b.submit(1), b.submit(2)]
    with pytest.raises(batcher.Busy, match="at most 2"):
      b.submit(3)
    release.set()
    assert [f.result(30) for f in futures] == [0, 1, 2]
  finally:
    release.set()
    b.close()


def test_search_batch_pads_to_buckets_and_trims_each_answer():
  searcher = FakeSearcher("float")
  run = batcher.SearchBatch(searcher, max_batch=8)
  images = searcher.database[:3]
  queries = [batcher.Query(k=k, image=im) for k, im in zip((1, 5, 12), images)]
  answers = run.run(queries)
  assert searcher.batch_sizes == [4]  # 3 queries -> the 4-bucket, one forward pass
  for position, (query, answer) in enumerate(zip(queries, answers)):
    assert len(answer["ids"]) == query.k and answer["ids"][0] == 100 + position
    d, ids = searcher.search(images[position:position + 1], query.k)
    np.testing.assert_array_equal(answer["ids"], ids[0])
    assert answer["batch"] == {"size": 3, "padded_to": 4}


def test_one_bad_vector_does_not_fail_the_batch():
  searcher = FakeSearcher("binary")
  run = batcher.SearchBatch(searcher, max_batch=4)
  good = searcher.embed(searcher.database[:2])
  bad = np.full(7, 1, np.uint32)  # wrong number of words
  answers = run.run([batcher.Query(k=2, vector=good[0]), batcher.Query(k=2, vector=bad),
                     batcher.Query(k=2, vector=good[1])])
  assert answers[0]["ids"][0] == 100 and answers[2]["ids"][0] == 101
  assert isinstance(answers[1], ValueError)


def test_mixed_images_and_vectors_in_one_batch():
  searcher = FakeSearcher("float")
  run = batcher.SearchBatch(searcher, max_batch=8)
  vector = searcher.embed(searcher.database[4:5])[0]
  answers = run.run([batcher.Query(k=1, image=searcher.database[6]),
                     batcher.Query(k=1, vector=vector)])
  assert answers[0]["ids"].tolist() == [106] and answers[1]["ids"].tolist() == [104]


def test_label_table_matches_the_searcher(rng):
  searcher = FakeSearcher("float")
  run = batcher.SearchBatch(searcher, max_batch=2)
  ids = rng.permutation(np.concatenate([searcher.ids, [-1, 5, 10**9]]))
  np.testing.assert_array_equal(run.labels(ids),
                                np.where(np.isin(ids, searcher.ids), searcher.labels(ids), -1))
