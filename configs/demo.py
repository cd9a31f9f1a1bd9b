"""The main job: LeNet-L on scikit-learn's digits, F6 features, Euclidean and Hamming retrieval.

Run (the README's first command does this after installing):
  python bin/demo.py --workdir=runs/demo
  python bin/demo.py --workdir=runs/demo --config=configs/demo.py:quick   # seconds, for tests
  python bin/demo.py --workdir=runs/corel --dataset=corel1k \
      --config.dataset.manual_dir=../shared/datasets/corel1k --config.dataset.image_size=64

The split is stratified and seeded: `train` is the database the network learns from, `test` the
held-out queries (never seen in training).
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the demo config; `arg` may be "" (full demo) or "quick" (tiny, for tests)."""
  quick = arg == "quick"
  if arg not in ("", "quick"):
    raise ValueError(f"configs/demo.py takes '' or 'quick', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "digits"
  c.dataset.manual_dir = ""        # folder with the raw data; digits ships with scikit-learn.
  c.dataset.image_size = 32        # LeNet-5's input size; 8x8 digits are upsampled.
  c.dataset.database_split = "train"
  c.dataset.query_split = "test"

  c.model = ml_collections.ConfigDict()
  c.model.name = "lenet_l"
  c.model.kwargs = ml_collections.ConfigDict({"k": 1400})

  c.batch_size = 64
  c.num_epochs = 1 if quick else 20
  c.num_steps = -1                 # -1: worked out from num_epochs and the data size.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.momentum = 0.9
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_clip_norm = 0.0
  c.label_smoothing = 0.0
  c.augment = False
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
  c.eval_every_steps = -1          # -1: at the end of every epoch.

  c.retrieval = ml_collections.ConfigDict()
  c.retrieval.endpoint = "f6"
  c.retrieval.ks = (10, 20, 30, 40, 50)
  c.retrieval.hash_bits = -1       # -1: every feature dimension becomes one bit.
  c.retrieval.hash_threshold = "dimension"
  c.retrieval.sheet_queries = 8    # rows of the contact sheet.
  c.retrieval.sheet_k = 10
  return c
