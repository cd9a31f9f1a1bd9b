"""The CPU-scale CIFAR-10 recipe, measured on validation (issue 21): configs/cifar10.py's
one-cycle recipe (`model=<family>,cpu`: 8 epochs of batch 256, SGD + Nesterov, linear warmup
over 15 % of the steps, cosine to zero, label smoothing 0.1, flip + crop) at several peak
learning rates, for one family's CPU-scale backbone; its DFS-Net trains with the same recipe.

Run (InceptionV3 family, peaks 0.1 / 0.2 / 0.4; about 8 minutes per network on 2 cores):
  python bin/reproduce.py --experiment=cifar10_recipe:family=inception_v3 \
      --workdir=runs/cifar10_recipe_i
Smoke test (a generated CIFAR-10 folder, two steps):
  python bin/reproduce.py --experiment=cifar10_recipe:data=<folder> --quick --workdir=/tmp/r

Each recipe trains on the 50,000 training images minus the seeded, stratified validation tenth
that cifar10_schemes also carves (same fraction, same seed, so the same 5,000 images), evaluates
on it every epoch with cifar10_schemes' early stopping, and keeps its best checkpoint there;
the recipe with the best validation accuracy (mean over seeds when --seeds runs several) wins.
The test split's accuracy is measured once, at the selected checkpoint, and only reported.

Arguments (comma separated): "family=<resnet50|inception_v3|mobilenet_v2>" (default
inception_v3), "peaks=<a>+<b>+..." (peak learning rates, default 0.1+0.2+0.4), "quick",
"data=<folder>".
"""

import ml_collections

from cbir_jax import config_util

PEAKS = (0.1, 0.2, 0.4)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the cifar10_recipe experiment for `arg` (see the module docstring)."""
  schemes = config_util.load_sibling(__file__, "cifar10_schemes.py")
  paper = config_util.load_sibling(__file__, "corel_paper.py")
  training = config_util.load_sibling(__file__, "../cifar10.py")
  scale, family, data, peaks = "cpu", "inception_v3", "", PEAKS
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, _, value = part.partition("=")
    if part in ("quick", "cpu"):
      scale = part
    elif key == "family" and value in schemes.FAMILIES:
      family = value
    elif key == "data" and value:
      data = value
    elif key == "peaks" and value:
      peaks = config_util.positive_rates(value)
      if not peaks:
        raise ValueError("configs/experiments/cifar10_recipe.py: peaks= takes distinct "
                         f"positive learning rates joined by '+', got {value!r}")
    else:
      raise ValueError("configs/experiments/cifar10_recipe.py takes 'quick', 'data=<folder>', "
                       f"'family=<{'|'.join(schemes.FAMILIES)}>' and 'peaks=<a>+<b>', got "
                       f"{part!r}")
  base = training.get_config(f"model={family},cpu")
  # cifar10_schemes' own validation carve and stopping rule, so both see the same images.
  carve = schemes.get_config(f"{scale},families={family}")
  c = config_util.recipes_experiment("cifar10_recipe", scale, "cifar10_local",
                                     data or base.dataset.manual_dir)
  c.variant = f"family={family}"
  c.models = ml_collections.ConfigDict()
  for peak in peaks:
    m = ml_collections.ConfigDict(base.to_dict())
    m.dataset.manual_dir = c.dataset.manual_dir
    m.optimizer.learning_rate = peak
    config_util.select_on_validation(m, test_split="test",
                                     patience=carve.early_stopping_patience,
                                     validation_fraction=carve.validation_fraction)
    if scale == "quick":
      paper.quick_length(m)
      m.eval_batch_size = 10
    c.models[f"peak_{peak:g}".replace(".", "p")] = m
  configured = f"peak_{base.optimizer.learning_rate:g}".replace(".", "p")
  c.incumbent = configured if configured in c.models else ""
  c.description = (f"{base.model.name} ({family}'s CPU-scale backbone) on CIFAR-10's training "
                   f"split, {base.num_epochs} epochs at batch {base.batch_size}, peak learning "
                   f"rates {', '.join(f'{p:g}' for p in peaks)} (configs/cifar10.py's CPU_PEAK: "
                   f"{base.optimizer.learning_rate:g}); validation: a seeded, stratified 10 % of "
                   "the training split, carved before training; test = the 10,000 test images, "
                   "reported only.")
  return c
