"""ResNet50 / InceptionV3 / MobileNetV2 and their DFS-Nets (seed paper 002) on CIFAR-10.

Run (paper scale: the full backbone with its CIFAR stem at 32x32, 200 epochs):
  python bin/train.py --config=configs/cifar10.py:model=dfs_resnet50 --workdir=runs/dfs_r50_c10
CPU scale (the CPU-scale variant of the same family, docs/MODELS.md "CPU-scale variants": same
blocks and DFS module, narrower, stride-2 stem; 8 epochs of the 50,000 training images with a
one-cycle recipe; 6-26 minutes per network on 2 cores):
  python bin/train.py --config=configs/cifar10.py:model=dfs_inception_v3,cpu \
      --workdir=runs/dfs_i3_c10_cpu
Tiny scale (the narrow *_tiny test variant, 300 steps of 64; what docs/RESULTS.md showed before
2026-11-28, on data_batch_1's 10,000 images):
  python bin/train.py --config=configs/cifar10.py:model=dfs_inception_v3,tiny \
      --workdir=runs/dfs_i3_c10_tiny
GPU scale (the paper's full models with CIFAR stems, bfloat16 compute, batch 512, a one-cycle
recipe over 6 epochs; the CIFAR-10 JPEGs packed by bin/pack_dataset.py, read with no tfds; what
`bin/reproduce.py --experiment=cifar10_schemes:gpu` trains, docs/RESULTS.md "Paper scale on one
GPU"):
  python bin/train.py --config=configs/cifar10.py:model=dfs_resnet50,gpu \
      --config.dataset.manual_dir=runs/gpu_carry/cifar10_packed --workdir=runs/dfs_r50_c10_gpu
Models: resnet50, inception_v3, mobilenet_v2, dfs_resnet50, dfs_inception_v3, dfs_mobilenet_v2.
The data folder (official python pickles, or the *_jpeg folders of ../shared/datasets/cifar10)
defaults to ../shared/datasets/cifar10 (env CBIR_SHARED_DATASETS overrides the datasets folder);
elsewhere pass --config.dataset.manual_dir=<folder>. Split "train" is all 50,000 training images
when the folder has train_jpeg/ (or all five python batches); "train_batches" is data_batch_1's
10,000 in the JPEG layout.

Arguments (comma separated): "model=<name>" (default resnet50), and "cpu", "tiny" or "gpu".
"""

import os

import ml_collections

from cbir_jax import config_util

MODELS = ("resnet50", "inception_v3", "mobilenet_v2", "dfs_resnet50", "dfs_inception_v3",
          "dfs_mobilenet_v2")
# The registry's CPU-scale variant of each family, used by ":cpu" (docs/MODELS.md).
CPU = {"resnet50": "resnet_cpu", "inception_v3": "inception_v3_cpu",
       "mobilenet_v2": "mobilenet_v2_cpu", "dfs_resnet50": "dfs_resnet_cpu",
       "dfs_inception_v3": "dfs_inception_v3_cpu", "dfs_mobilenet_v2": "dfs_mobilenet_v2_cpu"}
# The registry's narrow test-scale variant of each family, used by ":tiny".
TINY = {"resnet50": "resnet_tiny", "inception_v3": "inception_v3_tiny",
        "mobilenet_v2": "mobilenet_v2_tiny", "dfs_resnet50": "dfs_resnet_tiny",
        "dfs_inception_v3": "dfs_inception_v3_tiny", "dfs_mobilenet_v2": "dfs_mobilenet_v2_tiny"}

# CPU scale: each family's peak learning rate (its DFS-Net uses the same), the one with the best
# validation accuracy in configs/experiments/cifar10_recipe.py's sweep (docs/RESULTS.md, "The
# training recipes, measured on validation"; one seed, 8 epochs; R and I over 0.1..1.6, M over
# 0.05..0.2, each winner inside its range). The 8-epoch CIFAR-10 tables there trained every
# family at 0.2, before that measurement: cifar10_schemes' `peak=0.2`.
CPU_PEAK = {"resnet50": 0.8, "inception_v3": 0.8, "mobilenet_v2": 0.1}

# GPU scale: the packed data's default folder (bin/pack_dataset.py --out=...), "" when absent.
_PACKED_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "runs",
                               "gpu_carry", "cifar10_packed")
PACKED = os.path.abspath(_PACKED_DEFAULT) if os.path.isdir(_PACKED_DEFAULT) else ""
# A step count no run reaches: evaluate / checkpoint only at the end.
NEVER = 10 ** 9


def _parse(arg: str) -> tuple[str, str]:
  """"model=<name>,cpu" -> (name, scale); scale is "" (paper), "cpu", "tiny" or "gpu"."""
  model, scale = "resnet50", ""
  for part in filter(None, (p.strip() for p in arg.split(","))):
    key, _, value = part.partition("=")
    if key == "model" and value in MODELS:
      model = value
    elif part in ("cpu", "tiny", "gpu") and not scale:
      scale = part
    else:
      raise ValueError(f"bad config argument {part!r}; expected 'model=<one of {list(MODELS)}>' "
                       "and one of 'cpu', 'tiny' or 'gpu'")
  return model, scale


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the CIFAR-10 config for `arg` = "model=<name>[,cpu|,tiny|,gpu]"."""
  model, scale = _parse(arg)
  cpu, tiny, gpu = scale == "cpu", scale == "tiny", scale == "gpu"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "auto"

  c.dataset = ml_collections.ConfigDict()
  # GPU scale: the packed JPEGs (bin/pack_dataset.py; data set "cifar10_packed", no tfds).
  c.dataset.name = "cifar10_packed" if gpu else "cifar10_local"
  c.dataset.manual_dir = PACKED if gpu else config_util.shared_dataset("cifar10")
  c.dataset.data_dir = ""
  c.dataset.image_size = 32
  # > 0: a seeded, stratified fraction of train_split held out as split "validation" for
  # choices (recipes, checkpoints); the trainer then trains on the rest.
  c.dataset.validation_fraction = 0.0
  c.dataset.train_split = "train_batches" if tiny else "train"
  c.dataset.eval_split = "test"

  c.model = ml_collections.ConfigDict()
  c.model.name = CPU[model] if cpu else TINY[model] if tiny else model
  # CIFAR stems for 32x32 (the CPU-scale variants set their own: stride-2 CIFAR stems). GPU:
  # bfloat16 compute (parameters, logits, features and the loss stay float32).
  c.model.kwargs = ml_collections.ConfigDict(
      {} if cpu else {"small_input": True, "dtype": "bfloat16"} if gpu else {"small_input": True})

  # The paper gives no hyper-parameters. Paper and tiny scale: the standard CIFAR recipe, SGD +
  # Nesterov, cosine. CPU scale: a short one-cycle run in the manner of fast CIFAR training
  # (linear warmup over the first 15 % of steps to the family's peak, CPU_PEAK, for batch 256 --
  # the standard recipe's 0.1 per 128 images would be 0.2 --, cosine to zero, label smoothing
  # 0.1, flip + 4-pixel crop, weight decay 5e-4 on kernels only). On 2 cores batches of 128, 256 and 512 train at the same
  # images/s (537-572 img/s for dfs_resnet_cpu), so 256 keeps more steps per epoch.
  # GPU scale: the CPU recipe's one-cycle schedule at batch 512 (peak 0.4, the same 0.1 per 128
  # images), 6 epochs (the ~10-minute budget, docs/RESULTS.md); no evaluation or checkpoint
  # before the end (a device call cannot resume across calls anyway).
  c.batch_size = 256 if cpu else 64 if tiny else 512 if gpu else 128
  c.eval_batch_size = 1000 if gpu else -1
  c.num_epochs = 8 if cpu else 6 if gpu else 200
  c.num_steps = 300 if tiny else -1
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  family = model[len("dfs_"):] if model.startswith("dfs_") else model
  c.optimizer.learning_rate = CPU_PEAK[family] if cpu else 0.05 if tiny else 0.4 if gpu else 0.1
  c.optimizer.weight_decay = 5e-4
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0 if cpu or gpu else 30 if tiny else 1000
  c.optimizer.warmup_fraction = 0.15 if cpu or gpu else 0.0
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
  c.log_every_steps = 20 if tiny else 50 if cpu or gpu else 100
  c.eval_every_steps = 100 if tiny else NEVER if gpu else -1
  c.checkpoint_every_steps = 100 if tiny else 100 if cpu else NEVER if gpu else 2000
  c.keep_checkpoints = 2
  # Decisions on the validation split (early stopping, best checkpoint; off by default) and the
  # augmentation policy: config_util.decision_defaults / select_on_validation.
  config_util.decision_defaults(c)
  return c
