"""The AlexNet CPU recipe, chosen on validation (issue 21): configs/alexnet_corel1k.py:cpu's
Adam + cosine against the paper's SGD recipe (momentum 0.9, weight decay 5e-4, 0.1x steps at
1/3 and 2/3 of the run), both for the narrow alexnet_tiny at 64x64 on Corel-1K's database split.

Run (three seeds, a few minutes each on 2 cores):
  python bin/reproduce.py --experiment=alexnet_recipe --seeds=0,1,2 --workdir=runs/alexnet_recipe
Smoke test (tiny images, two steps):
  python bin/reproduce.py --experiment=alexnet_recipe --quick --workdir=/tmp/alexnet_recipe

Each recipe trains on the database split minus a seeded, stratified 10 % validation carve
(50 images) for the config's 30 epochs, evaluates on validation every epoch and keeps its best
checkpoint there; the recipe with the best validation accuracy (mean over seeds) wins. The
query split's accuracy is measured once, at the selected checkpoint, and only reported.

Arguments (comma separated): "quick"; "data=<folder>" (another Corel-1K folder).
"""

import ml_collections

from cbir_jax import config_util


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the alexnet_recipe experiment; `arg` is "" or "quick" (+ ",data=<folder>")."""
  scale, data = "cpu", ""
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, _, value = part.partition("=")
    if part in ("quick", "cpu"):
      scale = part
    elif key == "data" and value:
      data = value
    else:
      raise ValueError("configs/experiments/alexnet_recipe.py takes 'quick' and "
                       f"'data=<folder>', got {part!r}")
  paper = config_util.load_sibling(__file__, "corel_paper.py")
  base = config_util.load_sibling(__file__, "../alexnet_corel1k.py").get_config("cpu")
  c = config_util.recipes_experiment("alexnet_recipe", scale, "corel1k",
                                     data or config_util.shared_dataset("corel1k"))
  adam = ml_collections.ConfigDict(base.to_dict())
  sgd = ml_collections.ConfigDict(base.to_dict())
  # The paper's recipe (Krizhevsky et al.), as configs/alexnet_corel1k.py uses it at 227x227.
  sgd.optimizer.name = "sgd"
  sgd.optimizer.learning_rate = 0.01
  sgd.optimizer.weight_decay = 5e-4
  sgd.optimizer.schedule = "step"
  c.models = ml_collections.ConfigDict({"adam_cosine": adam, "sgd_step": sgd})
  for m in c.models.values():
    m.dataset.manual_dir = c.dataset.manual_dir
    config_util.select_on_validation(m, test_split="query", patience=0,
                                     validation_fraction=0.1)
    if scale == "quick":
      paper.quick_length(m)
      m.dataset.image_size = 32
      m.model.kwargs.small_input = True
      m.eval_batch_size = 10
  size = c.models.adam_cosine.dataset.image_size
  c.description = (f"{base.model.name} at {size}x{size} on Corel-1K's database split "
                   "(validation: a seeded, stratified 10 % of it, carved before training); "
                   "test = the query split, reported only.")
  return c
