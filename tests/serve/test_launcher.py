"""bin/serve.py as a user runs it: flag errors are one line; on the Corel demo indexes it serves
until terminated."""

import os
import socket
import subprocess
import sys
import time

import pytest

from cbir_jax import config_util
from cbir_jax.index import load_index
from tests.serve.conftest import REPO, corel_file

httpx = pytest.importorskip("httpx")


def _serve(*args: str, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, str(REPO / "bin" / "serve.py"), *args], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), **kwargs)


@pytest.mark.parametrize("args,message", [
    (["--index=/nonexistent/float.index"], "serve: --index '/nonexistent/float.index' is not a file"),
    ([], "serve: --index is required"),
    (["--index=README.md", "--port=0"], "serve: --port must be in [1, 65535], got 0"),
    (["--index=README.md", "stray"], "serve: unexpected arguments ['stray']"),
])
def test_flag_errors_are_one_line(args, message):
  proc = _serve(*args)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert message in err, err[-2000:]


@pytest.mark.slow  # starts a server process (imports, model and index loading): ~10 s
def test_serves_the_demo_indexes_until_terminated(corel_demo):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  proc = _serve(f"--index={corel_demo / 'float.index'},{corel_demo / 'binary.index'}",
                f"--port={port}", "--k=3")
  try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to ~5 min on a loaded machine
      if proc.poll() is not None:
        pytest.fail(f"the server exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
      try:
        health = httpx.get(f"{url}/health", timeout=2).json()
        break
      except httpx.HTTPError:
        time.sleep(0.5)
    else:
      pytest.fail("the server never answered /health")
    assert [ix["name"] for ix in health["indexes"]] == ["float", "binary"]
    names = health["indexes"][0]["class_names"]
    image_id = int(load_index(str(corel_demo / "float.index")).ids[0])  # a database image
    data = corel_file(config_util.shared_dataset("corel1k"), image_id, names).read_bytes()
    res = httpx.post(f"{url}/search", files={"image": ("q.jpg", data, "image/jpeg")}, timeout=60)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["k"] == 3 and body["results"][0]["id"] == image_id
  finally:
    proc.terminate()
    proc.wait(60)
  out = proc.stdout.read()
  assert f"serving on http://127.0.0.1:{port}/" in out
