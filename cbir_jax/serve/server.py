"""Running the search service: open the indexes once, compile, serve with uvicorn.

`serve(index_paths, ...)` is what `cbir-serve` calls. `running(app)` serves an app from a
background thread on a free loopback port (tests, the benchmark, screenshots).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any, Iterator, Sequence

from absl import logging

from cbir_jax.serve.app import ServeConfig, create_app


def index_names(paths: Sequence[str]) -> list[str]:
  """Short unique names of index files: the file stem ("float"), else the folder/stem."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  if len(set(stems)) == len(stems):
    return stems
  return [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), s)
          for p, s in zip(paths, stems)]


def open_searchers(paths: Sequence[str], *, train_workdir: str | None = None,
                   weights: str | None = None, weights_format: str | None = None
                   ) -> dict[str, Any]:
  """{name: ImageSearcher} of index files (each with its model and preprocessing)."""
  from cbir_jax import query  # pylint: disable=import-outside-toplevel  # loads TF/JAX
  if not paths:
    raise ValueError("no index given")
  names = index_names(paths)
  if len(set(names)) != len(names):
    raise ValueError(f"the same index is given twice: {list(paths)}")
  out = {}
  for name, path in zip(names, paths):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"index {path!r} is not a file")
    started = time.perf_counter()
    kwargs = {"weights_format": weights_format} if weights_format else {}
    out[name] = query.ImageSearcher.open(path, train_workdir=train_workdir, weights=weights,
                                         **kwargs)
    logging.info("opened %s (%s, %d images) in %.1f s", path, out[name].kind,
                 len(out[name].index), time.perf_counter() - started)
  return out


def _uvicorn_server(app, host: str, port: int, **kwargs):
  import uvicorn  # pylint: disable=import-outside-toplevel
  config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          limit_concurrency=kwargs.pop("limit_concurrency", 512),
                          timeout_keep_alive=kwargs.pop("timeout_keep_alive", 30), **kwargs)
  return uvicorn.Server(config)


def serve(index_paths: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000,
          config: ServeConfig = ServeConfig(), train_workdir: str | None = None,
          weights: str | None = None, weights_format: str | None = None,
          on_ready=None) -> None:
  """Opens `index_paths`, compiles every batch size, then serves until interrupted.

  `on_ready(url, app)` is called once the app is built, before serving starts.
  """
  searchers = open_searchers(index_paths, train_workdir=train_workdir, weights=weights,
                             weights_format=weights_format)
  app = create_app(searchers, config, warmup=True)
  if on_ready is not None:
    on_ready(f"http://{host}:{port}/", app)
  _uvicorn_server(app, host, port).run()


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1") -> Iterator[str]:
  """Serves `app` with uvicorn from a background thread on a free port; yields its base URL
  ("http://127.0.0.1:<port>") and stops the server on exit."""
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind((host, 0))
  port = sock.getsockname()[1]
  server = _uvicorn_server(app, host, port)
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  deadline = time.monotonic() + 60
  while not server.started:
    if not thread.is_alive() or time.monotonic() > deadline:
      raise RuntimeError("the uvicorn server did not start")
    time.sleep(0.01)
  try:
    yield f"http://{host}:{port}"
  finally:
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
