"""The search service's API with an in-process client and fake searchers (no network)."""

import numpy as np
import pytest

from tests.serve.conftest import CLASS_NAMES, png_bytes


def test_health_lists_both_indexes(client):
  body = client.get("/health").json()
  assert body["status"] == "ok"
  assert body["default_index"] == "float"
  assert [(ix["name"], ix["kind"], ix["size"]) for ix in body["indexes"]] == [
      ("float", "float", 40), ("binary", "binary", 40)]
  assert body["indexes"][0]["class_names"] == CLASS_NAMES


@pytest.mark.parametrize("index", ["float", "binary"])
def test_multipart_search_finds_the_database_image_first(client, fake_searchers, index):
  searcher = fake_searchers[index]
  position = 7
  res = client.post(f"/search?index={index}&k=5",
                    files={"image": ("q.png", png_bytes(searcher.database[position]), "image/png")})
  assert res.status_code == 200, res.text
  body = res.json()
  assert body["index"] == index and body["kind"] == index and body["k"] == 5
  assert body["index_size"] == 40
  top = body["results"][0]
  assert top["id"] == 100 + position and top["distance"] == 0 and top["rank"] == 1
  assert top["label"] == position % 5 and top["class"] == CLASS_NAMES[position % 5]
  assert top["image"] == f"/images/{100 + position}?index={index}"
  assert len(body["results"]) == 5
  distances = [r["distance"] for r in body["results"]]
  assert distances == sorted(distances)
  assert set(body["timings_ms"]) == {"read", "decode", "queue", "forward", "search", "total"}
  # Same answer as the searcher itself.
  d, ids = searcher.search(searcher.database[position:position + 1], 5)
  assert [r["id"] for r in body["results"]] == ids[0].tolist()
  np.testing.assert_allclose(distances, d[0], rtol=1e-5, atol=1e-5)


def test_raw_image_body_and_default_k(client, fake_searchers):
  image = fake_searchers["float"].database[3]
  res = client.post("/search", content=png_bytes(image), headers={"content-type": "image/png"})
  assert res.status_code == 200, res.text
  assert res.json()["k"] == 10 and res.json()["results"][0]["id"] == 103


def test_k_and_index_as_form_fields(client, fake_searchers):
  image = fake_searchers["binary"].database[2]
  res = client.post("/search", files={"image": ("q.png", png_bytes(image), "image/png")},
                    data={"k": "3", "index": "binary"})
  assert res.status_code == 200, res.text
  assert res.json()["index"] == "binary" and len(res.json()["results"]) == 3


def test_json_vector_and_code(client, fake_searchers):
  float_searcher, binary_searcher = fake_searchers["float"], fake_searchers["binary"]
  vector = float_searcher.embed(float_searcher.database[5:6])[0]
  res = client.post("/search", json={"vector": vector.tolist(), "k": 4})
  assert res.status_code == 200, res.text
  assert res.json()["results"][0]["id"] == 105 and len(res.json()["results"]) == 4
  code = binary_searcher.embed(binary_searcher.database[9:10])[0]
  res = client.post("/search?index=binary", json={"code": [int(w) for w in code]})
  assert res.status_code == 200, res.text
  assert res.json()["results"][0] == {"rank": 1, "id": 109, "distance": 0, "label": 4,
                                      "class": "four", "image": "/images/109?index=binary"}


def test_images_endpoint(client, fake_searchers):
  res = client.get("/images/104?index=float")
  assert res.status_code == 200 and res.headers["content-type"] == "image/png"
  from PIL import Image  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  decoded = np.asarray(Image.open(io.BytesIO(res.content)))
  np.testing.assert_array_equal(decoded, fake_searchers["float"].database[4])
  assert client.get("/images/104").status_code == 200  # default index
  missing = client.get("/images/5")
  assert missing.status_code == 404 and "no database image with id 5" in missing.json()["error"]
  assert client.get("/images/abc").status_code == 400


def test_page_is_served(client):
  res = client.get("/")
  assert res.status_code == 200 and "text/html" in res.headers["content-type"]
  assert 'id="results"' in res.text and 'type="file"' in res.text


def test_stats_count_requests_and_latency(client, fake_searchers):
  image = png_bytes(fake_searchers["float"].database[0])
  for _ in range(3):
    assert client.post("/search", files={"image": ("q.png", image, "image/png")}).status_code == 200
  assert client.post("/search", content=b"", headers={"content-type": "image/png"}
                     ).status_code == 400
  stats = client.get("/stats").json()
  assert stats["searches"] == 3
  assert stats["requests"]["POST /search"] == 4
  assert stats["statuses"]["4xx"] == 1
  latency = stats["search_latency_ms"]
  assert latency["window"] == 3 and 0 < latency["p50"] <= latency["p99"]
  sizes = {ix["name"]: ix["size"] for ix in stats["indexes"]}
  assert sizes == {"float": 40, "binary": 40}
  assert sum(ix["queries"] for ix in stats["indexes"]) == 3
