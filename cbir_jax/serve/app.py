"""The search service's HTTP API (FastAPI): /search, /images/<id>, /health, /stats and the page.

`create_app(searchers, config)` serves one or more searchers (`cbir_jax.query.ImageSearcher`, or
any object with its attributes `index`, `kind`, `image_shape`, `class_names` and methods
`decode`, `embed`, `search_vectors`, `labels`, `image`), each under a name ("float",
"binary", ...):

- `POST /search?index=<name>&k=<k>`: the body is a multipart form with an image file (field
  `image`), or raw image bytes (Content-Type image/* or application/octet-stream), or JSON
  `{"vector": [d floats]}` (float index) / `{"code": [words uint32]}` (binary index), with
  optional `"k"` and `"index"`. Answers `{"index", "kind", "metric", "k", "index_size",
  "results": [{"rank", "id", "distance", "label", "class", "image"}], "timings_ms": {"read",
  "decode", "queue", "forward", "search", "total"}, "batch": {"size", "padded_to"}}`.
- `GET /images/<id>?index=<name>`: the database image as PNG (404 when it cannot be loaded).
- `GET /health`: `{"status": "ok", "indexes": [...]}`; `GET /stats`: request counts, search
  latency p50/p99 (last 10,000 searches), batches, index sizes.
- `GET /`: the web page (static/index.html).

Every refused request is a 4xx with `{"error": "<what was wrong and what is expected>"}`: a body
over `max_upload_bytes` (413, checked from Content-Length and while reading), an image over
`max_pixels` (413, from its header, before decoding), not an image / empty / truncated (400), an
unsupported Content-Type (415), a bad vector, code or k (400), an unknown index (404), a full
queue (503). Concurrent searches of one index are micro-batched (`batcher.MicroBatcher`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import importlib.resources
import io
import json
import threading
import time
from typing import Any, Mapping

from absl import logging
import anyio
import numpy as np
from PIL import Image

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cbir_jax.serve import batcher as batcher_lib
from cbir_jax.serve import inputs
from cbir_jax.serve.inputs import BadInput

_METRICS = {"float": "squared L2 (Euclidean)", "binary": "Hamming"}


@dataclasses.dataclass(frozen=True)
class ServeConfig:
  """Limits and batching of the service (the launcher's flags)."""
  max_upload_bytes: int = 20 * 2 ** 20   # request body limit (413 beyond)
  max_pixels: int = 25_000_000           # decoded image limit, checked from the header (413)
  max_batch: int = 8                     # queries per forward pass + search
  max_wait_ms: float = 0.0               # wait for more queries after the first (0: none)
  max_queue: int = 1024                  # waiting queries per index beyond this -> 503
  default_k: int = 10
  max_k: int = 1000                      # results per query at most (response size bound)
  thumbnail_cache: int = 4096            # database images kept encoded as PNG
  max_decoders: int = 4                  # images (or JSON bodies) decoded at once

  def __post_init__(self):
    for name in ("max_upload_bytes", "max_pixels", "max_batch", "max_queue", "default_k",
                 "max_k", "max_decoders"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_wait_ms < 0:
      raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


class Stats:
  """Request counts and the latencies of the last `window` successful searches (thread-safe)."""

  def __init__(self, window: int = 10_000):
    self._lock = threading.Lock()
    self.started = time.time()
    self.requests: collections.Counter = collections.Counter()
    self.statuses: collections.Counter = collections.Counter()
    self._search_ms: collections.deque = collections.deque(maxlen=window)
    self.searches = 0

  def record(self, method: str, path: str, status: int, seconds: float) -> None:
    route = path if path in ("/", "/search", "/health", "/stats") else (
        "/images/<id>" if path.startswith("/images/") else "other")
    with self._lock:
      self.requests[f"{method} {route}"] += 1
      self.statuses[f"{status // 100}xx"] += 1
      if route == "/search" and status == 200:
        self.searches += 1
        self._search_ms.append(seconds * 1e3)

  def snapshot(self) -> dict[str, Any]:
    with self._lock:
      latencies = np.asarray(self._search_ms, np.float64)
      out = {"uptime_s": round(time.time() - self.started, 3),
             "requests": {"total": int(sum(self.requests.values())), **dict(self.requests)},
             "statuses": dict(self.statuses), "searches": self.searches}
    out["search_latency_ms"] = {"window": int(latencies.size)}
    if latencies.size:
      out["search_latency_ms"].update(
          p50=round(float(np.percentile(latencies, 50)), 3),
          p99=round(float(np.percentile(latencies, 99)), 3),
          mean=round(float(latencies.mean()), 3), max=round(float(latencies.max()), 3))
    return out


class _StatsMiddleware:
  """ASGI middleware: times every HTTP request and records it with its status in `Stats`."""

  def __init__(self, app, stats: Stats):
    self.app = app
    self.stats = stats

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    start = time.perf_counter()
    status = [500]

    async def send_status(message):
      if message["type"] == "http.response.start":
        status[0] = message["status"]
      await send(message)

    try:
      await self.app(scope, receive, send_status)
    finally:
      self.stats.record(scope["method"], scope["path"], status[0], time.perf_counter() - start)


def _error(status: int, message: str) -> JSONResponse:
  return JSONResponse({"error": message, "status": status}, status_code=status)


def _dim(index: Any) -> int:
  return int(getattr(index, "words", None) or index.dim)


class _Index:
  """One served searcher: its batcher, a lock for lazy data-set loads, encoded thumbnails."""

  def __init__(self, name: str, searcher: Any, config: ServeConfig):
    self.name = name
    self.searcher = searcher
    self.lock = threading.Lock()
    self.batch = batcher_lib.SearchBatch(searcher, config.max_batch, self.lock)
    self.batcher = batcher_lib.MicroBatcher(
        self.batch.run, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1e3,
        max_queue=config.max_queue, name=f"batcher-{name}")
    self.thumbnails: collections.OrderedDict[int, bytes | None] = collections.OrderedDict()
    self.cache_size = config.thumbnail_cache

  def describe(self) -> dict[str, Any]:
    s = self.searcher
    return {"name": self.name, "kind": s.kind, "metric": _METRICS.get(s.kind, s.kind),
            "size": len(s.index), "dim": _dim(s.index),
            "image_shape": list(s.image_shape), "class_names": s.class_names,
            "batches": self.batcher.batches, "queries": self.batcher.items}

  def thumbnail(self, image_id: int) -> bytes | None:
    """PNG bytes of a database image, or None (cached either way)."""
    with self.lock:
      if image_id in self.thumbnails:
        self.thumbnails.move_to_end(image_id)
        return self.thumbnails[image_id]
      image = self.searcher.image(image_id)
      png = None
      if image is not None:
        image = np.asarray(image, np.uint8)
        buf = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, "PNG")
        png = buf.getvalue()
      self.thumbnails[image_id] = png
      if len(self.thumbnails) > self.cache_size:
        self.thumbnails.popitem(last=False)
      return png


async def _read_body(request: Request, limit: int) -> bytes:
  """The request body, refused (413) as soon as it is known to exceed `limit` bytes."""
  declared = request.headers.get("content-length")
  if declared is not None:
    if not declared.strip().isdigit():
      raise BadInput(400, f"bad Content-Length {declared!r}")
    if int(declared) > limit:
      raise BadInput(413, f"request body of {int(declared)} bytes is over this service's limit "
                          f"of {limit} bytes")
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > limit:
      raise BadInput(413, f"request body is over this service's limit of {limit} bytes")
    chunks.append(chunk)
  return b"".join(chunks)


async def _multipart_image(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
  """(image bytes, other text fields) of a multipart body already read into `body`."""
  done = False

  async def replay():
    nonlocal done
    if done:
      return {"type": "http.disconnect"}
    done = True
    return {"type": "http.request", "body": body, "more_body": False}

  try:
    form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
  except Exception as e:  # pylint: disable=broad-except  # starlette's parser errors
    raise BadInput(400, f"malformed multipart body: {getattr(e, 'detail', None) or e}") from e
  try:
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    files = [value for _, value in form.multi_items() if not isinstance(value, str)]
    if not files:
      raise BadInput(400, "multipart body needs an image file (form field 'image'); "
                          f"got only fields {sorted(fields)}")
    return await files[0].read(), fields
  finally:
    await form.close()


def _results(index: _Index, answer: dict[str, Any]) -> list[dict[str, Any]]:
  names = index.searcher.class_names or []
  binary = index.searcher.kind == "binary"
  rows = []
  for rank, (d, i, label) in enumerate(zip(answer["distances"], answer["ids"],
                                           answer["labels"])):
    label = int(label)
    rows.append({"rank": rank + 1, "id": int(i), "distance": int(d) if binary else float(d),
                 "label": label, "class": names[label] if 0 <= label < len(names) else None,
                 "image": f"/images/{int(i)}?index={index.name}"})
  return rows


def create_app(searchers: Mapping[str, Any], config: ServeConfig = ServeConfig(), *,
               warmup: bool = False) -> FastAPI:
  """The FastAPI app serving `searchers` ({name: searcher}, the first is the default).

  `warmup` compiles each searcher's forward pass and search for every batch bucket now.
  """
  if not searchers:
    raise ValueError("no index to serve")
  indexes = {name: _Index(name, s, config) for name, s in searchers.items()}
  default = next(iter(indexes))
  if warmup:
    for index in indexes.values():
      started = time.perf_counter()
      index.batch.warmup(min(config.default_k, len(index.searcher.index)))
      logging.info("index %s: compiled batches %s in %.1f s", index.name, index.batch.buckets,
                   time.perf_counter() - started)
  stats = Stats()
  # At most this many bodies are decoded at once (bounds the memory of decoded images).
  decoders = anyio.CapacityLimiter(config.max_decoders)

  @contextlib.asynccontextmanager
  async def lifespan(_):
    yield
    for index in indexes.values():
      index.batcher.close()

  app = FastAPI(title="cbir_jax search", lifespan=lifespan, docs_url="/docs", redoc_url=None)
  app.state.indexes = indexes
  app.state.stats = stats
  app.state.config = config
  app.add_middleware(_StatsMiddleware, stats=stats)

  @app.exception_handler(BadInput)
  async def _bad_input(_, e: BadInput):
    return _error(e.status, e.message)

  @app.exception_handler(RequestValidationError)
  async def _bad_request(_, e: RequestValidationError):
    parts = [f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}"
             for err in e.errors()]
    return _error(400, "bad request: " + "; ".join(parts))

  @app.exception_handler(StarletteHTTPException)
  async def _http_error(request: Request, e: StarletteHTTPException):
    message = e.detail
    if e.status_code == 404 and message == "Not Found":
      message = (f"no such endpoint {request.url.path!r}; endpoints: GET /, POST /search, "
                 "GET /images/<id>, GET /health, GET /stats")
    elif e.status_code == 405:
      message = f"{request.method} is not allowed on {request.url.path}"
    return _error(e.status_code, str(message))

  @app.exception_handler(Exception)
  async def _internal(_, e: Exception):
    logging.exception("internal error")
    return _error(500, f"internal error: {type(e).__name__}: {e}")

  def pick(name: str | None) -> _Index:
    if name is None or name == "":
      return indexes[default]
    if name not in indexes:
      raise BadInput(404, f"no index named {name!r}; this service has {sorted(indexes)}")
    return indexes[name]

  @app.get("/", response_class=HTMLResponse)
  async def page():
    return HTMLResponse(importlib.resources.files("cbir_jax.serve").joinpath(
        "static", "index.html").read_text(encoding="utf-8"))

  @app.get("/health")
  async def health():
    return {"status": "ok", "default_index": default, "default_k": config.default_k,
            "max_k": config.max_k, "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
            "indexes": [index.describe() for index in indexes.values()]}

  @app.get("/stats")
  async def get_stats():
    snap = stats.snapshot()
    snap["indexes"] = [{key: value for key, value in index.describe().items()
                        if key not in ("class_names", "image_shape")}
                       for index in indexes.values()]
    return snap

  @app.get("/images/{image_id}")
  async def get_image(image_id: str, index: str | None = None):
    try:
      number = int(image_id)
    except ValueError:
      raise BadInput(400, f"image id must be an integer, got {image_id!r}") from None
    served = pick(index)
    png = await run_in_threadpool(served.thumbnail, number)
    if png is None:
      raise BadInput(404, f"no database image with id {number} for index {served.name!r} (the "
                          "id is not in its data set, or the data set cannot be loaded here)")
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})

  @app.post("/search")
  async def search(request: Request, index: str | None = None, k: str | None = None):
    started = time.perf_counter()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    accepted = ("multipart/form-data", "application/json", "application/octet-stream")
    if content_type not in accepted and not content_type.startswith("image/"):
      raise BadInput(415, f"unsupported Content-Type {content_type or '(none)'!r}; send a "
                          "multipart form with an image file (field 'image'), raw image bytes "
                          "(image/*, application/octet-stream) or JSON with 'vector' or 'code'")
    body = await _read_body(request, config.max_upload_bytes)
    read_ms = (time.perf_counter() - started) * 1e3
    fields: dict[str, Any] = {}
    data = vector = None
    if content_type == "application/json":
      try:  # Off the event loop: a large body takes a while to parse.
        fields = await anyio.to_thread.run_sync(json.loads, body, limiter=decoders)
      except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(400, f"body is not valid JSON: {e}") from e
      if not isinstance(fields, dict):
        raise BadInput(400, "JSON body must be an object like {\"vector\": [...], \"k\": 10}")
    elif content_type == "multipart/form-data":
      data, fields = await _multipart_image(request, body)
    else:
      data = body
    served = pick(index if index is not None else fields.get("index"))
    searcher = served.searcher
    n = len(searcher.index)
    k_value = k if k is not None else fields.get("k", min(config.default_k, n))
    k_int = inputs.parse_k(k_value, n, config.max_k)
    t0 = time.perf_counter()
    if data is not None:
      image = await anyio.to_thread.run_sync(inputs.decode_image, data, searcher.decode,
                                             config.max_pixels, limiter=decoders)
      query = batcher_lib.Query(k=k_int, image=image)
    else:
      vector = inputs.parse_vector(fields, searcher.kind, _dim(searcher.index))
      query = batcher_lib.Query(k=k_int, vector=vector)
    decode_ms = (time.perf_counter() - t0) * 1e3
    try:
      future = served.batcher.submit(query)
    except batcher_lib.Busy as e:
      raise BadInput(503, str(e)) from e
    try:
      answer = await asyncio.wrap_future(future)
    except (ValueError, TypeError) as e:
      raise BadInput(400, str(e)) from e
    timings = {"read": read_ms, "decode": decode_ms, **answer["timings_ms"],
               "total": (time.perf_counter() - started) * 1e3}
    return {"index": served.name, "kind": searcher.kind,
            "metric": _METRICS.get(searcher.kind, searcher.kind), "k": k_int, "index_size": n,
            "results": _results(served, answer),
            "timings_ms": {key: round(value, 3) for key, value in timings.items()},
            "batch": answer["batch"]}

  return app
