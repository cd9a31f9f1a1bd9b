"""The main job: LeNet-L on scikit-learn's digits, F6 features, Euclidean and Hamming retrieval.

Run (the README's first command does this after installing):
  python bin/demo.py --workdir=runs/demo
  python bin/demo.py --workdir=runs/demo_quick --config=configs/demo.py:quick   # seconds
  python bin/demo.py --workdir=runs/corel --dataset=corel1k \
      --config.dataset.manual_dir=../shared/datasets/corel1k --config.dataset.image_size=64 \
      --config.dataset.train_split=database --config.dataset.eval_split=query

Training fields are those of configs/digits.py (read from the file beside this one, so the two
never drift apart); `retrieval` is the demo's own. The database is the training split (`train`),
the queries are the held-out split (`test`): stratified, seeded, never seen in training.
"""

import ml_collections

from cbir_jax import config_util


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the demo config; `arg` is "" (full demo) or "quick" (tiny, for tests)."""
  if arg not in ("", "quick"):
    raise ValueError(f"configs/demo.py takes '' or 'quick', got {arg!r}")
  c = config_util.load_sibling(__file__, "digits.py").get_config("tiny" if arg == "quick" else "")
  c.retrieval = ml_collections.ConfigDict()
  c.retrieval.endpoint = "f6"          # LeNet-L's 84-d F6 layer (seed 000).
  c.retrieval.ks = (10, 20, 30, 40, 50)
  c.retrieval.hash_bits = -1           # -1: every feature dimension (ranked by IGR) is one bit.
  c.retrieval.hash_threshold = "dimension"
  c.retrieval.sheet_queries = 10       # rows of the contact sheet (one query per class first).
  c.retrieval.sheet_k = 10
  return c
