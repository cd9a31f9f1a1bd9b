"""ResNet50 / InceptionV3 / MobileNetV2 and their DFS-Nets (seed paper 002) on CIFAR-10.

Run (paper scale: the full backbone with its CIFAR stem at 32x32, 200 epochs):
  python bin/train.py --config=configs/cifar10.py:model=dfs_resnet50 --workdir=runs/dfs_r50_c10
CPU-scale (the narrow *_tiny variant of the same family, 300 steps; a few minutes on 2 cores):
  python bin/train.py --config=configs/cifar10.py:model=dfs_inception_v3,cpu \
      --workdir=runs/dfs_i3_c10_cpu
Models: resnet50, inception_v3, mobilenet_v2, dfs_resnet50, dfs_inception_v3, dfs_mobilenet_v2.
The data folder (official python pickles, or the *_jpeg folders of ../shared/datasets/cifar10)
defaults to ../shared/datasets/cifar10 (env CBIR_SHARED_DATASETS overrides the datasets folder);
elsewhere pass --config.dataset.manual_dir=<folder>.

Arguments (comma separated): "model=<name>" (default resnet50), "cpu".
"""

import ml_collections

from cbir_jax import config_util

MODELS = ("resnet50", "inception_v3", "mobilenet_v2", "dfs_resnet50", "dfs_inception_v3",
          "dfs_mobilenet_v2")
# The registry's narrow test-scale variant of each family, used by ":cpu".
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
    elif part == "cpu":
      cpu = True
    else:
      raise ValueError(f"bad config argument {part!r}; expected 'model=<one of {list(MODELS)}>' "
                       "and/or 'cpu'")
  return model, cpu


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the CIFAR-10 config for `arg` = "model=<name>[,cpu]"."""
  model, cpu = _parse(arg)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "auto"

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "cifar10_local"
  c.dataset.manual_dir = config_util.shared_dataset("cifar10")
  c.dataset.data_dir = ""
  c.dataset.image_size = 32
  # > 0: a seeded, stratified fraction of train_split held out as split "validation" for
  # choices (recipes, checkpoints); the trainer then trains on the rest.
  c.dataset.validation_fraction = 0.0
  c.dataset.train_split = "train"
  c.dataset.eval_split = "test"

  c.model = ml_collections.ConfigDict()
  c.model.name = TINY[model] if cpu else model
  c.model.kwargs = ml_collections.ConfigDict({"small_input": True})  # CIFAR stems for 32x32.

  # Standard CIFAR recipe (the paper gives no hyper-parameters): SGD + Nesterov, cosine.
  c.batch_size = 64 if cpu else 128
  c.eval_batch_size = -1
  c.num_epochs = 200
  c.num_steps = 300 if cpu else -1
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05 if cpu else 0.1
  c.optimizer.weight_decay = 5e-4
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 30 if cpu else 1000
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
  return c
