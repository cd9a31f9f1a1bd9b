"""Suite-wide fixtures."""

import os
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _temp_dir_under_pytest(tmp_path_factory):
  """Points `tempfile` at a folder under pytest's base temp (which pytest prunes).

  tensorflow-datasets leaves an empty `tmp*tfds` folder in the temp dir each time a builder is
  created for a not-yet-prepared data set (DatasetInfo.initialize_from_bucket), about 300 per
  run of this suite; this keeps them out of /tmp, for launchers run as subprocesses too (TMPDIR).
  """
  saved, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
  folder = str(tmp_path_factory.mktemp("tempfile"))
  tempfile.tempdir = os.environ["TMPDIR"] = folder
  yield
  tempfile.tempdir = saved
  if saved_env is None:
    os.environ.pop("TMPDIR", None)
  else:
    os.environ["TMPDIR"] = saved_env
