"""ResNet50 / InceptionV3 / MobileNetV2 and their DFS-Nets (seed paper 002) on Caltech-256.

Run (paper scale: 224x224 inputs, 299x299 for the Inception family):
  python bin/train.py --config=configs/caltech256.py:model=dfs_mobilenet_v2 \
      --workdir=runs/dfs_m2_c256 --config.dataset.manual_dir=/data/256_ObjectCategories
CPU-scale (the narrow *_tiny variant at 64x64, 80x80 for Inception, 300 steps):
  python bin/train.py --config=configs/caltech256.py:model=resnet50,cpu --workdir=runs/r50_cpu \
      --config.dataset.manual_dir=/data/256_ObjectCategories
Models: resnet50, inception_v3, mobilenet_v2, dfs_resnet50, dfs_inception_v3, dfs_mobilenet_v2.
The data is not shipped: manual_dir is the standard 256_ObjectCategories folder (the clutter
class 257 is excluded); a stratified seeded 80/20 train/test split is used.

Arguments (comma separated): "model=<name>" (default resnet50), "cpu" (or its alias "tiny").
"""

import ml_collections

from cbir_jax import config_util

MODELS = ("resnet50", "inception_v3", "mobilenet_v2", "dfs_resnet50", "dfs_inception_v3",
          "dfs_mobilenet_v2")
TINY = {"resnet50": "resnet_tiny", "inception_v3": "inception_v3_tiny",
        "mobilenet_v2": "mobilenet_v2_tiny", "dfs_resnet50": "dfs_resnet_tiny",
        "dfs_inception_v3": "dfs_inception_v3_tiny", "dfs_mobilenet_v2": "dfs_mobilenet_v2_tiny"}


def _parse(arg: str) -> tuple[str, bool]:
  """"model=<name>,cpu" -> (name, cpu)."""
  model, cpu = "resnet50", False
  for part in filter(None, (p.strip() for p in arg.split(","))):
    key, _, value = part.partition("=")
    if key == "model" and value in MODELS:
      model = value
    elif part in ("cpu", "tiny"):  # The same here: the *_tiny variants.
      cpu = True
    else:
      raise ValueError(f"bad config argument {part!r}; expected 'model=<one of {list(MODELS)}>' "
                       "and/or 'cpu'")
  return model, cpu


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the Caltech-256 config for `arg` = "model=<name>[,cpu]"."""
  model, cpu = _parse(arg)
  inception = "inception" in model
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "auto"

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "caltech256"
  c.dataset.manual_dir = ""           # required: the 256_ObjectCategories folder.
  c.dataset.data_dir = ""
  # InceptionV3 needs >= 75x75 with its ImageNet stem.
  c.dataset.image_size = (80 if inception else 64) if cpu else (299 if inception else 224)
  # > 0: a seeded, stratified fraction of train_split held out as split "validation" for
  # choices (recipes, checkpoints); the trainer then trains on the rest.
  c.dataset.validation_fraction = 0.0
  c.dataset.train_split = "train"
  c.dataset.eval_split = "test"

  c.model = ml_collections.ConfigDict()
  c.model.name = TINY[model] if cpu else model
  c.model.kwargs = ml_collections.ConfigDict()

  # ImageNet-style recipe (the paper gives no hyper-parameters): SGD + momentum, cosine.
  c.batch_size = 32 if cpu else 64
  c.eval_batch_size = -1
  c.num_epochs = 60
  c.num_steps = 300 if cpu else -1
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.025 if cpu else 0.05
  c.optimizer.weight_decay = 1e-4
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 30 if cpu else 2000
  c.optimizer.grad_clip_norm = 0.0
  c.label_smoothing = 0.1
  c.aux_loss_weight = 0.0
  c.augment = True
  # Fine-tuning from imported weights (torchvision .pth/.safetensors, Keras .h5; README "Using
  # pretrained weights"): the file, its model when not this one's minus "dfs_", its format when
  # the extension does not say, and how many steps the imported trunk stays frozen.
  c.init_from = ""
  c.init_from_model = ""
  c.init_from_format = ""
  c.freeze_trunk_steps = 0
  c.log_every_steps = 20 if cpu else 100
  c.eval_every_steps = 100 if cpu else -1
  c.checkpoint_every_steps = 100 if cpu else 2000
  c.keep_checkpoints = 2
  # Decisions on the validation split (early stopping, best checkpoint; off by default) and the
  # augmentation policy: config_util.decision_defaults / select_on_validation.
  config_util.decision_defaults(c)
  return c
