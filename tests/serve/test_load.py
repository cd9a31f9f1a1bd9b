"""Load test: 8 concurrent clients, 1,000 query-by-image requests over loopback against a real
uvicorn server on the Corel-1K demo indexes; zero errors, every answer right; p50/p99 printed."""

import concurrent.futures
import time

import numpy as np
import pytest

from tests.serve.conftest import corel_file

httpx = pytest.importorskip("httpx")

# Builds the Corel demo index (shared with test_browser) and starts a server: ~20 s in all.
pytestmark = pytest.mark.slow

CLIENTS = 8
REQUESTS = 1000


def test_eight_clients_thousand_requests_zero_errors(corel_service):
  url, searchers, corel = corel_service
  names = searchers["float"].class_names
  ids = np.asarray(searchers["float"].index.ids)
  chosen = ids[np.linspace(0, len(ids) - 1, 16).astype(int)]  # 16 database images, all classes
  uploads = [(int(i), corel_file(corel, int(i), names).read_bytes()) for i in chosen]

  def client(worker: int) -> list[tuple[float, int, str]]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
      for r in range(worker, REQUESTS, CLIENTS):
        image_id, data = uploads[r % len(uploads)]
        index = "float" if r % 2 == 0 else "binary"
        start = time.perf_counter()
        res = http.post(f"/search?index={index}&k=5",
                        files={"image": (f"{image_id}.jpg", data, "image/jpeg")})
        seconds = time.perf_counter() - start
        problem = ""
        if res.status_code != 200:
          problem = f"{res.status_code}: {res.text[:200]}"
        else:
          top = res.json()["results"][0]
          exact = top["id"] == image_id and top["distance"] < 1e-3  # float32 rounding
          if (index == "float" and not exact) or (index == "binary" and top["distance"] != 0):
            problem = f"query {image_id} on {index}: top-1 {top}"
        out.append((seconds, res.status_code, problem))
    return out

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
    results = [row for rows in pool.map(client, range(CLIENTS)) for row in rows]
  wall = time.perf_counter() - started
  problems = [p for _, _, p in results if p]
  assert len(results) == REQUESTS
  assert not problems, f"{len(problems)} bad answers, first: {problems[:3]}"
  latencies = np.asarray([s for s, _, _ in results]) * 1e3
  stats = httpx.get(f"{url}/stats").json()
  batches = {ix["name"]: ix["queries"] / max(ix["batches"], 1) for ix in stats["indexes"]}
  print(f"\nload test: {REQUESTS} requests, {CLIENTS} clients, {wall:.2f} s, "
        f"{REQUESTS / wall:.0f} requests/s; client latency p50 {np.percentile(latencies, 50):.1f}"
        f" ms, p99 {np.percentile(latencies, 99):.1f} ms; server p50 "
        f"{stats['search_latency_ms']['p50']:.1f} ms, p99 {stats['search_latency_ms']['p99']:.1f}"
        f" ms; mean batch {', '.join(f'{k} {v:.2f}' for k, v in batches.items())}")
  assert stats["statuses"].get("5xx", 0) == 0 and stats["statuses"].get("4xx", 0) == 0
  assert stats["searches"] >= REQUESTS
