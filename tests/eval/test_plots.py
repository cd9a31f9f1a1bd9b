"""Plots write real PNGs atomically."""

import numpy as np
from PIL import Image

from cbir_jax.eval import plots


def test_contact_sheet_writes_png(tmp_path):
  rng = np.random.default_rng(0)
  q, k = 2, 3
  out = plots.contact_sheet(
      str(tmp_path / "sheet.png"), rng.integers(0, 255, (q, 8, 8, 1), dtype=np.uint8),
      np.array([0, 1]), rng.integers(0, 255, (q, k, 8, 8, 1), dtype=np.uint8),
      np.array([[0, 1, 0], [1, 1, 0]]), rng.random((q, k)), np.arange(q * k).reshape(q, k),
      class_names=["zero", "one"], title="t")
  with Image.open(out) as im:
    assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 50
  assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no temp file left behind


def test_curves_and_pr(tmp_path):
  x = np.array([10, 20, 30])
  plots.curves(str(tmp_path / "c.png"), x, {"ours": x / 40}, xlabel="k", ylabel="mAP",
               reference={"paper": x / 50})
  plots.pr_curves(str(tmp_path / "pr.png"), {"a": (np.array([1, .5]), np.array([.5, 1]))})
  for name in ("c.png", "pr.png"):
    with Image.open(tmp_path / name) as im:
      assert im.format == "PNG"


def test_import_leaves_the_matplotlib_backend_alone():
  # A fresh interpreter whose backend is set by the user (as a notebook's would be): importing
  # the module and writing a figure must not switch it.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = (
      "import matplotlib, tempfile, os, numpy as np\n"
      "matplotlib.use('svg')\n"
      "from cbir_jax.eval import plots\n"
      "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
      "d = tempfile.mkdtemp()\n"
      "plots.curves(os.path.join(d, 'c.png'), np.arange(3), {'a': np.arange(3)}, xlabel='x',"
      " ylabel='y')\n"
      "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
      "import matplotlib.pyplot as plt\n"
      "assert plt.get_fignums() == [], plt.get_fignums()\n"
      "print('OK')\n")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
