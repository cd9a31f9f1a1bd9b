"""Suite-wide fixtures."""

import os
import tempfile

import numpy as np
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


@pytest.fixture
def rng(request):
  """A NumPy Generator with a fresh seed per test (or $CBIR_TEST_SEED), printed on failure.

  Random tests draw new inputs every run, and a failure names the seed that reproduces it:
  `CBIR_TEST_SEED=<seed> pytest <test id>`.
  """
  seed = int(os.environ.get("CBIR_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
  request.node.user_properties.append(("random seed", seed))
  return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if report.failed:
    for name, value in item.user_properties:
      if name == "random seed":
        report.sections.append(("random seed", f"seed {value}: rerun with "
                                               f"CBIR_TEST_SEED={value} pytest '{item.nodeid}'"))
