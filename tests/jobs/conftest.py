"""Fixtures of the jobs tests: a one-step LeNet-L run and a small photo folder with a bad file."""

import pytest

from tests.photo_files import make_photos
from tests.tiny_run import train_tiny_lenet


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A LeNet-L (K = 8) run of one step on digits at 16x16 (input (16, 16, 1))."""
  workdir = tmp_path_factory.mktemp("run")
  train_tiny_lenet(workdir)
  return workdir


@pytest.fixture
def photos(tmp_path):
  """39 readable JPEGs, 13 per class, and the unreadable c1/bad.jpg (40 files)."""
  return make_photos(tmp_path / "photos", 13)
