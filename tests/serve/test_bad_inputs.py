"""Bad input never takes the service down: each case is a 4xx with a clear JSON message, and
the next good request is answered."""

import io
import json
import struct
import zlib

import numpy as np
import pytest

from cbir_jax.serve import inputs
from tests.serve.conftest import png_bytes

# The 100-megapixel cases: PIL warns when it opens their header; the service refuses them (413).
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG whose IHDR claims width x height RGB, followed by 100 bytes of pixel data only."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) +
          _chunk(b"IDAT", zlib.compress(b"\x00" * 100)))


def _png_bomb(width: int, height: int) -> bytes:
  """A valid 1-bit PNG of width x height zeros: a few kB that decode to width*height pixels."""
  chunk = _chunk
  row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
  packer = zlib.compressobj(9)
  data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
  ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) +
          chunk(b"IEND", b""))


def _image(seed: int = 0) -> bytes:
  rng = np.random.default_rng(seed)
  return png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def _upload(data: bytes, name: str = "q.png", mime: str = "image/png"):
  return {"files": {"image": (name, data, mime)}}


_GOOD = _image()
_JPEG = io.BytesIO()
from PIL import Image  # pylint: disable=wrong-import-position
Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
    _JPEG, "JPEG")
_JPEG = _JPEG.getvalue()

# (case, request kwargs for client.post, url, expected status, words the message must contain)
CASES = [
    ("not an image", _upload(b"hello, I am text, not a picture"), "/search", 400,
     ["not a readable image"]),
    ("zero bytes", _upload(b""), "/search", 400, ["empty image (0 bytes)"]),
    ("zero-byte raw body", {"content": b"", "headers": {"content-type": "image/jpeg"}},
     "/search", 400, ["empty image"]),
    ("truncated jpeg", _upload(_JPEG[:len(_JPEG) // 2], "q.jpg", "image/jpeg"), "/search", 400,
     ["cannot decode the JPEG image", "64x64"]),
    ("truncated png", _upload(_GOOD[:60]), "/search", 400, ["cannot decode"]),
    ("100-megapixel header", _upload(_png_header_only(10_000, 10_000)), "/search", 413,
     ["10000x10000", "100.0 megapixels", "at most 1 megapixels"]),
    ("100-megapixel png bomb", _upload(_png_bomb(10_000, 10_000)), "/search", 413,
     ["megapixels"]),
    ("wrong content type", {"content": b"abc", "headers": {"content-type": "text/plain"}},
     "/search", 415, ["unsupported Content-Type 'text/plain'"]),
    ("no content type", {"content": b"abc", "headers": {"content-type": ""}}, "/search", 415,
     ["unsupported Content-Type"]),
    ("over-long body", _upload(b"\xff" * 300_000), "/search", 413,
     ["over this service's limit of 200000 bytes"]),
    ("multipart without a file", {"data": {"k": "3"}, "files": {"other": ("x", b"", "a/b")},
                                  "headers": {}}, "/search", 400, []),
    ("vector of the wrong length", {"json": {"vector": [0.5] * 10}}, "/search", 400,
     ["'vector' must have 192 entries", "got 10"]),
    ("NaN in the vector", {"content": json.dumps({"vector": [float("nan")] + [0.0] * 191}),
                           "headers": {"content-type": "application/json"}}, "/search", 400,
     ["NaN or infinity at position 0"]),
    ("vector of strings", {"json": {"vector": ["a"] * 192}}, "/search", 400,
     ["only numbers"]),
    ("vector sent to a binary index", {"json": {"vector": [0.0] * 192}}, "/search?index=binary",
     400, ["needs 'code'", "searched with 'code'"]),
    ("code word too large", {"json": {"code": [2 ** 32] + [0] * 5}}, "/search?index=binary", 400,
     ["[0, 2**32)"]),
    ("malformed JSON", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     "/search", 400, ["not valid JSON"]),
    ("JSON list", {"json": [1, 2, 3]}, "/search", 400, ["must be an object"]),
    ("k = 0", _upload(_GOOD), "/search?k=0", 400, ["k must be in [1, 40]", "got 0"]),
    ("k < 0", _upload(_GOOD), "/search?k=-3", 400, ["k must be in [1, 40]"]),
    ("k > N", _upload(_GOOD), "/search?k=41", 400, ["k must be in [1, 40]",
                                                    "index holds 40 images"]),
    ("k not a number", _upload(_GOOD), "/search?k=ten", 400, ["k must be an integer"]),
    ("k in JSON is a bool", {"json": {"vector": [0.0] * 192, "k": True}}, "/search", 400,
     ["k must be an integer"]),
    ("unknown index", _upload(_GOOD), "/search?index=nope", 404,
     ["no index named 'nope'", "binary", "float"]),
    ("unknown endpoint", {}, "/nowhere", 404, ["no such endpoint"]),
    ("bad Content-Length", {"content": b"x", "headers": {"content-type": "image/png",
                                                         "content-length": "abc"}},
     "/search", 400, ["Content-Length"]),
]


@pytest.mark.parametrize("case,kwargs,url,status,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_the_service_stays_up(client, case, kwargs, url, status,
                                                          words):
  del case
  res = client.post(url, **kwargs)
  assert res.status_code == status, res.text
  body = res.json()
  assert body["status"] == status and body["error"]
  for word in words:
    assert word in body["error"]
  good = client.post("/search?k=3", **_upload(_GOOD))
  assert good.status_code == 200 and len(good.json()["results"]) == 3


def test_get_on_search_and_post_on_health_are_405(client):
  assert client.get("/search").status_code == 405
  res = client.post("/health")
  assert res.status_code == 405 and "not allowed" in res.json()["error"]


def test_body_without_content_length_is_cut_off(client):
  def chunks():  # streamed (chunked) upload: no Content-Length to check up front
    for _ in range(50):
      yield b"\x00" * 10_000
  res = client.post("/search", content=chunks(), headers={"content-type": "image/png"})
  assert res.status_code == 413 and "limit of 200000 bytes" in res.json()["error"]
  assert client.get("/health").status_code == 200


def test_a_failing_searcher_is_a_json_500_and_the_next_request_works(fake_searchers):
  from fastapi.testclient import TestClient  # pylint: disable=import-outside-toplevel
  from cbir_jax.serve.app import create_app  # pylint: disable=import-outside-toplevel
  client = TestClient(create_app(fake_searchers), raise_server_exceptions=False)
  searcher = fake_searchers["float"]
  original = searcher.embed
  searcher.embed = lambda images: (_ for _ in ()).throw(RuntimeError("device lost"))
  res = client.post("/search", **_upload(_GOOD))
  assert res.status_code == 500 and "device lost" in res.json()["error"]
  searcher.embed = original
  assert client.post("/search", **_upload(_GOOD)).status_code == 200


def test_header_check_reads_no_pixels():
  with pytest.raises(inputs.BadInput) as e:
    inputs.check_image_header(_png_header_only(10_000, 10_000), 25_000_000)
  assert e.value.status == 413
  assert inputs.check_image_header(_png_header_only(100, 50), 25_000_000) == (100, 50, "PNG")
