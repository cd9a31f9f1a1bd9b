"""Seed 000's networks pretrained on CIFAR-10, to start the Corel-1K ones from (issue 17 item 4).

No ImageNet weights exist on this machine; CIFAR-10's 50,000 training images are the largest
labelled set here. This trains LeNet-L or AlexNet on them, upsampled to the input size of the
Corel run it will start (the same size: LeNet-L's L-K layer depends on it), with the model's own
Corel-1K recipe (optimizer, schedule shape, batch) and flip + crop; 10 % of the training images
are the validation split that picks the checkpoint and stops training; the test split is
reported only. Then:
  python bin/train.py --config=configs/cifar10_pretrain.py:model=alexnet,size=64 \
      --workdir=runs/pre_alexnet64
  python bin/reproduce.py --experiment=corel_heldout:small,alexnet_init=runs/pre_alexnet64 ...

Arguments (comma separated): "model=alexnet" or "model=lenet_l" (default alexnet), "size=<S>" or
"size=<H>x<W>" (default 64 for AlexNet, 64x96 for LeNet-L: corel_heldout:small's sizes),
"epochs=<N>" (default 4).
"""

import ml_collections

from cbir_jax import config_util

MODELS = ("alexnet", "lenet_l")


def _parse(arg: str) -> tuple[str, tuple[int, int] | None, int]:
  model, size, epochs = "alexnet", None, 4
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, _, value = part.partition("=")
    if key == "model" and value in MODELS:
      model = value
    elif key == "size" and all(v.isdigit() and int(v) > 0 for v in value.split("x")) and (
        1 <= len(value.split("x")) <= 2):
      parts = [int(v) for v in value.split("x")]
      size = (parts[0], parts[-1])
    elif key == "epochs" and value.isdigit() and int(value) > 0:
      epochs = int(value)
    else:
      raise ValueError(f"configs/cifar10_pretrain.py takes 'model=<{'|'.join(MODELS)}>', "
                       f"'size=<S or HxW>' and 'epochs=<N > 0>', got {part!r}")
  return model, size, epochs


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the CIFAR-10 pretraining config of `arg` (see the module docstring)."""
  model, size, epochs = _parse(arg)
  recipe_file = "alexnet_corel1k.py" if model == "alexnet" else "lenet_l_corel1k.py"
  c = config_util.load_sibling(__file__, recipe_file).get_config("")
  h, w = size or ((64, 64) if model == "alexnet" else (64, 96))
  c.dataset = ml_collections.ConfigDict(dict(
      c.dataset.to_dict(), name="cifar10_local", data_dir="", train_split="train",
      manual_dir=config_util.shared_dataset("cifar10"), image_size=h if h == w else (h, w)))
  c.model.name = model
  c.num_epochs = epochs
  c.num_steps = -1
  c.eval_every_steps = -1
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  config_util.select_on_validation(c, test_split="test", patience=1, validation_fraction=0.1)
  return c
