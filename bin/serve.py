"""The search service: load indexes and their models once, answer query-by-image over HTTP.

  python bin/serve.py --index=runs/demo/float.index,runs/demo/binary.index   # or `cbir-serve`
  # then open http://127.0.0.1:8000/ (drop an image on the page), or:
  curl -F image=@photo.jpg 'http://127.0.0.1:8000/search?k=5'

Needs the `[serve]` extra (pip install '.[serve]'). Endpoints: POST /search, GET /images/<id>,
GET /health, GET /stats and the web page at / (see cbir_jax/serve/app.py).
"""

import os
import sys

from absl import app, flags, logging

from cbir_jax._bin import launch

_INDEX = flags.DEFINE_list("index", None, "Index file(s), comma-separated, e.g. "
                           "runs/demo/float.index,runs/demo/binary.index; each is served under "
                           "its file stem (float, binary); the first is the default.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every "
                            "interface).")
_PORT = flags.DEFINE_integer("port", 8000, "TCP port.")
_TRAIN_WORKDIR, _WEIGHTS, _WEIGHTS_FORMAT = launch.define_model_override_flags()
flags.adopt_module_key_flags(launch)  # --help lists them
_K = flags.DEFINE_integer("k", 10, "Results per query when a request does not say.")
_MAX_K = flags.DEFINE_integer("max_k", 1000, "Most results one request may ask for.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 8, "Most concurrent queries answered by one "
                                  "forward pass + one search (micro-batching); 1 turns it off.")
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 0.0, "How long a batch waits for more queries "
                                  "after its first (0: only those already waiting).")
_MAX_UPLOAD_MB = flags.DEFINE_float("max_upload_mb", 20.0, "Largest request body (MiB); larger "
                                    "ones get 413.")
_MAX_MEGAPIXELS = flags.DEFINE_float("max_megapixels", 25.0, "Largest image (width x height, "
                                     "millions), checked from its header before decoding; "
                                     "larger ones get 413.")


def _fail(message: str) -> None:
  launch.fail("serve", message)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; all options are --flags")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if not _INDEX.value:
    _fail("--index is required (e.g. --index=runs/demo/float.index,runs/demo/binary.index)")
  for path in _INDEX.value:
    if not os.path.isfile(path):
      _fail(f"--index {path!r} is not a file")
  if not 0 < _PORT.value < 65536:
    _fail(f"--port must be in [1, 65535], got {_PORT.value}")
  try:
    from cbir_jax.serve import server  # pylint: disable=import-outside-toplevel
    from cbir_jax.serve.app import ServeConfig  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    _fail(f"{e}; the service needs the [serve] extra: pip install '.[serve]'")
  try:
    config = ServeConfig(max_upload_bytes=int(_MAX_UPLOAD_MB.value * 2 ** 20),
                         max_pixels=int(_MAX_MEGAPIXELS.value * 1e6),
                         max_batch=_MAX_BATCH.value, max_wait_ms=_MAX_WAIT_MS.value,
                         default_k=_K.value, max_k=_MAX_K.value)
  except ValueError as e:
    _fail(str(e))

  def ready(url: str, served) -> None:
    for index in served.state.indexes.values():
      print(f"index {index.name}: {index.searcher.kind}, {len(index.searcher.index)} images")
    print(f"serving on {url}  (open it in a browser; Ctrl-C stops)", flush=True)

  try:
    server.serve(_INDEX.value, host=_HOST.value, port=_PORT.value, config=config,
                 train_workdir=_TRAIN_WORKDIR.value, weights=_WEIGHTS.value,
                 weights_format=_WEIGHTS_FORMAT.value, on_ready=ready)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  except OSError as e:  # e.g. the port is taken
    _fail(f"cannot serve on {_HOST.value}:{_PORT.value}: {e}")
  sys.exit(0)


def run() -> None:
  launch.ensure_malloc_tuning()
  app.run(main, flags_parser=launch.flags_parser("serve"))


if __name__ == "__main__":
  run()
