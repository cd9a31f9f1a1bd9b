"""LeNet-L on scikit-learn's digits (upscaled to 32x32): the embedded default, seconds on a CPU.

Run:
  python bin/train.py --config=configs/digits.py --workdir=runs/digits
  python bin/train.py --config=configs/digits.py:tiny --workdir=/tmp/digits_tiny   # smoke test
  python bin/train.py --config=configs/digits.py --workdir=runs/digits_k800 \
      --config.model.kwargs.lk_features=800

Arguments (comma separated): "tiny" (K = 32, 1 epoch: for tests).
"""

import ml_collections

from cbir_jax import config_util


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the digits training config; `arg` is "" or "tiny"."""
  if arg not in ("", "tiny"):
    raise ValueError(f"configs/digits.py takes '' or 'tiny', got {arg!r}")
  tiny = arg == "tiny"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "auto"            # jax.distributed.initialize(): "auto", "on" or "off".

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "digits"
  c.dataset.manual_dir = ""         # digits ships with scikit-learn.
  c.dataset.data_dir = ""           # tfds data_dir for the photo sets; "" = tfds default.
  c.dataset.image_size = 32         # LeNet-5's input size; the 8x8 digits are upsampled.
  # > 0: a seeded, stratified fraction of train_split held out as split "validation" for
  # choices (recipes, checkpoints); the trainer then trains on the rest.
  c.dataset.validation_fraction = 0.0
  c.dataset.train_split = "train"   # the database images.
  c.dataset.eval_split = "test"     # held-out queries; "" = no evaluation.

  c.model = ml_collections.ConfigDict()
  c.model.name = "lenet_l"
  # lk_features: the paper's K, the width of LeNet-L's L-K layer.
  c.model.kwargs = ml_collections.ConfigDict({"lk_features": 32 if tiny else 1400})

  c.batch_size = 64
  c.eval_batch_size = -1            # -1: batch_size.
  c.num_epochs = 1 if tiny else 20
  c.num_steps = -1                  # -1: num_epochs * (training examples // batch_size).
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.momentum = 0.9
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_clip_norm = 0.0
  c.label_smoothing = 0.0
  c.aux_loss_weight = 0.0
  c.augment = False
  # Fine-tuning from imported weights (torchvision .pth/.safetensors, Keras .h5; README "Using
  # pretrained weights"): the file, its model when not this one's minus "dfs_", its format when
  # the extension does not say, and how many steps the imported trunk stays frozen.
  c.init_from = ""
  c.init_from_model = ""
  c.init_from_format = ""
  c.freeze_trunk_steps = 0
  c.log_every_steps = 10 if tiny else 20
  c.eval_every_steps = -1           # -1: at the end of every epoch.
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
  # Decisions on the validation split (early stopping, best checkpoint; off by default) and the
  # augmentation policy: config_util.decision_defaults / select_on_validation.
  config_util.decision_defaults(c)
  return c
