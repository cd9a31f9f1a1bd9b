"""cbir_jax.atomic: a failed write keeps the previous file intact and leaves no temporary file."""

import json
import os
import stat

import pytest

from cbir_jax import atomic


def test_write_then_replace(tmp_path):
  path = tmp_path / "sub" / "a.json"
  atomic.write_json(path, {"b": 1, "a": [1, 2]})
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
  assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
  atomic.write_text(path, "new")
  assert path.read_text() == "new"
  assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_crash_inside_the_block_keeps_previous_file(tmp_path):
  path = tmp_path / "r.bin"
  path.write_bytes(b"previous complete content")
  with pytest.raises(RuntimeError, match="simulated crash"):
    with atomic.atomic_write(path, "wb") as f:
      f.write(b"half of the new")
      raise RuntimeError("simulated crash")
  assert path.read_bytes() == b"previous complete content"
  assert [p.name for p in tmp_path.iterdir()] == ["r.bin"]


def test_crash_between_write_and_rename_keeps_previous_file(tmp_path, monkeypatch):
  path = tmp_path / "r.txt"
  path.write_text("old")
  def failing_replace(src, dst):
    raise OSError("disk vanished between write and rename")
  monkeypatch.setattr(atomic.os, "replace", failing_replace)
  with pytest.raises(OSError, match="between write and rename"):
    atomic.write_text(path, "new content")
  assert path.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_bad_mode():
  with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
    with atomic.atomic_write("x", "a"):
      pass
