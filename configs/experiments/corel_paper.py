"""Seed 000 on Corel-1K, the paper's protocol: train on all 1,000 images, every image queries them.

Run (paper scale: LeNet-L at the native 256x384, AlexNet at 227x227; accelerator-sized):
  python bin/reproduce.py --experiment=corel_paper --workdir=runs/corel_paper
CPU scale (the paper's input sizes, LeNet-L at 256x384 and AlexNet at 227x227, 30 epochs each
with the paper-scale recipes; hours on 2 cores with the K sweep):
  python bin/reproduce.py --experiment=corel_paper:cpu --workdir=runs/corel_paper_cpu
Small scale (LeNet-L at 64x96, AlexNet at 64x64, 15 epochs; what docs/RESULTS.md showed before
2026-11-28; AlexNet at 64x64 is below the input-size guard: its last pool leaves 1x1):
  python bin/reproduce.py --experiment=corel_paper:small --workdir=runs/corel_paper_small
Smoke test (tiny images, a few steps; seconds):
  python bin/reproduce.py --experiment=corel_paper --quick --workdir=/tmp/corel_paper_quick

Stages: train LeNet-L (K = 1400, plus the K sweep {800, ..., 1800}) and AlexNet on split `train`
(all 1,000 images) -> extract F6 (LeNet-L) and fc8 (AlexNet) -> fuse to AL -> exact Euclidean
index -> every database image is a query, its own entry removed from its result list -> Table 1
(mAP Top10..Top50, seed 000's formula (3)), Fig. 3 (K sweep) and Fig. 4 (recall).
The training images are the queries, so these numbers measure memorisation as much as retrieval;
corel_heldout.py is the honest protocol. No ImageNet weights exist here: AlexNet trains from
scratch, and its fc8 has 10 dimensions (one per Corel class), not the paper's 1,000.

Arguments (comma separated): "" (paper scale), "cpu", "small", "quick"; optionally
"data=<folder>", "alexnet_weights=<file>", "aug=strong" (the strong augmentation policy for both
networks), "epochs=<N>" (both networks' epoch budget), "alexnet_init=<workdir>" /
"lenet_init=<workdir>" (start a network from a training run), "alexnet_recipe=<sgd_step|
adam_1e-4|adam_3e-4>" (AlexNet's optimizer, ALEXNET_RECIPES; default configs/alexnet_corel1k.py's),
"lenet_lr=<rate>" (LeNet-L's peak learning rate; default configs/lenet_l_corel1k.py's) and
"pretrain=cifar10" (each network
first trains on CIFAR-10's 50,000 training images at its own input size with
configs/cifar10_pretrain.py's recipe, once per experiment workdir and shared by its seeds, then
starts from that run; "pretrain_data=<folder>" names another CIFAR-10 folder) and "sweep=off"
(K = 1400 only, no K sweep: at the paper's sizes the six LeNet-L widths take most of a day on
2 cores, so the CPU-scale K sweep runs at the small scale; the paper protocol at the paper's
sizes, without the sweep, is
  python bin/reproduce.py --experiment=corel_paper:cpu,sweep=off --workdir=runs/corel_paper_cpu).
"""

import ml_collections

from cbir_jax import config_util

# Seed 000, Table 1: mAP(Top10..Top50).
PAPER_TABLE1 = {
    "AL": (0.9478, 0.9256, 0.9083, 0.8935, 0.8769),
    "Fc8": (0.9277, 0.9032, 0.8814, 0.8635, 0.8464),
    "F6": (0.7962, 0.745, 0.7103, 0.6807, 0.6552),
}
LK_SWEEP = (800, 1000, 1200, 1400, 1600, 1800)
# Data sets a Corel network can be pretrained on ("pretrain=<name>").
PRETRAIN_SETS = ("cifar10",)
# AlexNet training recipes by name ("alexnet_recipe=<name>"; corel_recipe:sizes=paper compares
# them on validation): optimizer fields over configs/alexnet_corel1k.py's paper-scale recipe.
ALEXNET_RECIPES = {
    # Krizhevsky et al.'s: SGD 0.01, momentum 0.9, weight decay 5e-4, 0.1x at 1/3 and 2/3; every
    # Corel table published before 2026-11-29 trained AlexNet with it.
    "sgd_step": {"name": "sgd", "learning_rate": 0.01, "weight_decay": 5e-4,
                 "schedule": "step"},
    "adam_1e-4": {"name": "adam", "learning_rate": 1e-4, "weight_decay": 0.0,
                  "schedule": "cosine"},
    "adam_3e-4": {"name": "adam", "learning_rate": 3e-4, "weight_decay": 0.0,
                  "schedule": "cosine"},
}


def parse_options(arg: str, name: str) -> dict:
  """"cpu,data=/x,alexnet_weights=/w.pth,aug=strong,epochs=60" -> {"scale": "cpu", "data":
  "/x", "alexnet_weights": "/w.pth", "aug": "strong", "epochs": 60, ...}; scale "", "cpu",
  "small" or "quick"; aug "" (each recipe's own) or "strong" (input_pipeline's strong policy for
  both networks); epochs 0 = the scale's; alexnet_init / lenet_init: a training workdir each
  network starts from (`init_from`, e.g. configs/cifar10_pretrain.py's runs); pretrain
  "cifar10" (the experiment pretrains each network itself) with pretrain_data its folder."""
  options = {"scale": "", "data": "", "alexnet_weights": "", "aug": "", "epochs": 0,
             "alexnet_init": "", "lenet_init": "", "pretrain": "", "pretrain_data": "",
             "sweep": True, "patience": -1, "expansion": True, "alexnet_recipe": "",
             "lenet_lr": 0.0}
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, _, value = part.partition("=")
    if part in ("cpu", "small", "quick"):
      options["scale"] = part
    elif key in ("data", "alexnet_weights", "alexnet_init", "lenet_init",
                 "pretrain_data") and value:
      options[key] = value
    elif key == "pretrain" and value in PRETRAIN_SETS:
      options[key] = value
    elif key == "aug" and value == "strong":
      options["aug"] = value
    elif key == "epochs" and value.isdigit() and int(value) > 0:
      options["epochs"] = int(value)
    elif part == "sweep=off":
      options["sweep"] = False
    elif part == "expansion=off":
      options["expansion"] = False
    elif key == "alexnet_recipe" and value in ALEXNET_RECIPES:
      options[key] = value
    elif key == "lenet_lr" and len(config_util.positive_rates(value)) == 1:
      options[key] = config_util.positive_rates(value)[0]
    elif key == "patience" and value.isdigit():
      options["patience"] = int(value)
    else:
      raise ValueError(f"configs/experiments/{name}.py takes 'cpu', 'small', 'quick', "
                       "'data=<folder>', 'alexnet_weights=<file>', 'aug=strong', "
                       "'epochs=<N > 0>', 'alexnet_init=<workdir>', 'lenet_init=<workdir>', "
                       f"'pretrain=<{'|'.join(PRETRAIN_SETS)}>', 'pretrain_data=<folder>', "
                       "'sweep=off', 'patience=<N >= 0>', 'expansion=off', "
                       f"'alexnet_recipe=<{'|'.join(ALEXNET_RECIPES)}>' and "
                       f"'lenet_lr=<learning rate > 0>', got {part!r}")
  if options["pretrain_data"] and not options["pretrain"]:
    raise ValueError(f"configs/experiments/{name}.py: pretrain_data= needs pretrain=cifar10")
  if options["pretrain"] and (options["alexnet_init"] or options["lenet_init"]):
    raise ValueError(f"configs/experiments/{name}.py: pretrain= trains the starting points "
                     "itself; drop alexnet_init= / lenet_init= (or drop pretrain=)")
  return options


def parse_arg(arg: str, name: str) -> tuple[str, str, str]:
  """(scale, data, alexnet_weights) of `parse_options`."""
  o = parse_options(arg, name)
  return o["scale"], o["data"], o["alexnet_weights"]


def imported_alexnet(weights: str, manual_dir: str, train_split: str, image_size=227
                     ) -> ml_collections.ConfigDict:
  """The seed-000 AlexNet as the paper uses it: ImageNet weights you bring (torchvision .pth /
  .safetensors), not trained here; its fc8 is the 1,000-d ImageNet layer."""
  return ml_collections.ConfigDict({
      "imported_weights": weights, "imported_model": "alexnet", "seed": 0,
      "model": {"name": "alexnet"},
      "dataset": {"name": "corel1k", "manual_dir": manual_dir, "data_dir": "",
                  "image_size": image_size, "train_split": train_split,
                  "validation_fraction": 0.0}})


def _train_config(base: ml_collections.ConfigDict, *, scale: str, image_size, epochs: int,
                  train_split: str, eval_split: str, manual_dir: str,
                  model_name: str | None = None, kwargs: dict | None = None
                  ) -> ml_collections.ConfigDict:
  """The owner's training recipe `base` with the experiment's data split, size and length."""
  c = ml_collections.ConfigDict(base.to_dict())
  c.dataset.manual_dir = manual_dir
  c.dataset.image_size = image_size
  c.dataset.train_split = train_split
  c.dataset.eval_split = eval_split
  if model_name is not None:
    c.model.name = model_name
  for key, value in (kwargs or {}).items():
    c.model.kwargs[key] = value
  c.num_epochs = epochs
  c.num_steps = -1
  if scale == "quick":
    quick_length(c)
  return c


def quick_length(c: ml_collections.ConfigDict) -> None:
  """The "quick" scale's training length: two steps of ten images, no warmup or augmentation."""
  c.batch_size = 10
  c.num_epochs = -1
  c.num_steps = 2
  c.optimizer.warmup_steps = 0
  c.log_every_steps = 1
  c.checkpoint_every_steps = 100
  c.augment = False


def lk_widths(scale: str, sweep: bool) -> tuple[int, ...]:
  """The LeNet-L widths K an experiment trains: the paper's sweep 800..1800, or K = 1400 only
  (without the sweep, and always at the quick scale)."""
  return LK_SWEEP if sweep and scale != "quick" else (1400,)


def corel_models(scale: str, manual_dir: str, train_split: str, eval_split: str,
                 lk_sweep: bool, *, aug: str = "", epochs_override: int = 0,
                 alexnet_init: str = "", lenet_init: str = "", alexnet_recipe: str = "",
                 lenet_lr: float = 0.0) -> ml_collections.ConfigDict:
  """Training configs keyed by tag: lenet_lk<K> (the sweep or K = 1400 only) and alexnet;
  `aug`="strong" switches both to the strong augmentation policy, `epochs_override` > 0 sets
  their epoch budget, `alexnet_init` / `lenet_init` name training workdirs they start from,
  `alexnet_recipe` (a name of ALEXNET_RECIPES) replaces AlexNet's optimizer and `lenet_lr` > 0
  LeNet-L's peak learning rate."""
  # The paper-scale recipes of the training configs (LeNet-L and AlexNet: Adam + cosine, as
  # measured on validation by corel_recipe; alexnet_recipe= / lenet_lr= pin others) at every
  # scale; only lengths differ.
  lenet_base = config_util.load_sibling(__file__, "../lenet_l_corel1k.py").get_config("")
  alex_base = config_util.load_sibling(__file__, "../alexnet_corel1k.py").get_config("")
  if scale == "quick":
    lenet_size, alex_size, alex_model, epochs = (24, 36), 32, "alexnet_tiny", 1
  elif scale == "cpu":  # The paper's input sizes, CPU-sized epochs.
    lenet_size, alex_size, alex_model, epochs = (256, 384), 227, "alexnet", 30
  elif scale == "small":
    lenet_size, alex_size, alex_model, epochs = (64, 96), 64, "alexnet", 15
  else:
    lenet_size, alex_size, alex_model, epochs = (256, 384), 227, "alexnet", 0
  models = ml_collections.ConfigDict()
  for lk in lk_widths(scale, lk_sweep):  # LeNet-L's K, the width of its L-K layer.
    models[f"lenet_lk{lk}"] = _train_config(
        lenet_base, scale=scale, image_size=lenet_size, epochs=epochs or lenet_base.num_epochs,
        train_split=train_split, eval_split=eval_split, manual_dir=manual_dir,
        kwargs={"lk_features": lk})
  alex_kwargs = {"small_input": True} if scale == "quick" else {}
  models["alexnet"] = _train_config(
      alex_base, scale=scale, image_size=alex_size, epochs=epochs or alex_base.num_epochs,
      train_split=train_split, eval_split=eval_split, manual_dir=manual_dir,
      model_name=alex_model, kwargs=alex_kwargs)
  for tag, m in models.items():
    start = alexnet_init if tag == "alexnet" else lenet_init
    if start:
      m.init_from = start
    if aug and scale != "quick":
      m.augment = True
      m.augment_policy = aug
    if aug and scale == "quick":
      m.augment_policy = aug
    if epochs_override and scale != "quick":
      m.num_epochs = epochs_override
    if tag == "alexnet" and alexnet_recipe:
      apply_alexnet_recipe(m, alexnet_recipe)
    if tag != "alexnet" and lenet_lr > 0:
      m.optimizer.learning_rate = lenet_lr
  return models


def apply_alexnet_recipe(m: ml_collections.ConfigDict, name: str) -> None:
  """Sets training config `m`'s optimizer fields to ALEXNET_RECIPES[name]."""
  for key, value in ALEXNET_RECIPES[name].items():
    m.optimizer[key] = value


def model_options(options: dict) -> dict:
  """`corel_models`' keyword arguments from parsed experiment `options` (`parse_options`)."""
  return {"aug": options["aug"], "epochs_override": options["epochs"],
          "alexnet_init": options["alexnet_init"], "lenet_init": options["lenet_init"],
          "alexnet_recipe": options["alexnet_recipe"], "lenet_lr": options["lenet_lr"]}


def pretrain_configs(models: ml_collections.ConfigDict, scale: str, data: str = ""
                     ) -> ml_collections.ConfigDict:
  """configs/cifar10_pretrain.py's CIFAR-10 run for each trained model of `models` (keyed by
  the same tag): the model's own network (name, kwargs) at its own input size, so its weights
  fit; at "quick" scale two steps of ten images. Each model's init_from becomes
  "pretrain:<tag>", which the experiment resolves to the pretraining run's workdir."""
  base_module = config_util.load_sibling(__file__, "../cifar10_pretrain.py")
  out = ml_collections.ConfigDict()
  for tag, m in models.items():
    if m.get("imported_weights", ""):
      continue  # Imported weights (ImageNet AlexNet) are not retrained.
    family = "alexnet" if tag == "alexnet" else "lenet_l"
    size = m.dataset.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    p = base_module.get_config(f"model={family},size={h}x{w}")
    p.model = ml_collections.ConfigDict(m.model.to_dict())
    # The model's own recipe, so a recipe option (alexnet_recipe=, lenet_lr=) applies to its
    # pretraining too.
    p.optimizer = ml_collections.ConfigDict(m.optimizer.to_dict())
    if data:
      p.dataset.manual_dir = data
    if scale == "quick":
      quick_length(p)
      p.eval_batch_size = 10
      p.early_stopping_patience = 0
    out[tag] = p
    m.init_from = f"pretrain:{tag}"
  return out


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the corel_paper experiment; `arg` is "", "cpu" or "quick" (+ ",data=<folder>",
  ",alexnet_weights=<torchvision AlexNet file>", ...: `parse_options`)."""
  options = parse_options(arg, "corel_paper")
  for key, off, what in (("patience", options["patience"] >= 0, "stop on"),
                        ("expansion", not options["expansion"], "choose an expansion on")):
    if off:
      raise ValueError(f"configs/experiments/corel_paper.py: {key}= is for corel_heldout (the "
                       f"paper's protocol has no validation split to {what})")
  return base_config(options)


def base_config(options: dict) -> ml_collections.ConfigDict:
  """The corel_paper experiment of parsed `options` (`parse_options`); corel_heldout.py builds
  on it with its own options."""
  scale, data, weights = options["scale"], options["data"], options["alexnet_weights"]
  c = ml_collections.ConfigDict()
  c.name = "corel_paper"
  c.kind = "corel_fusion"
  c.scale = scale or "paper"
  c.seed = 0
  # "database": the query set IS the database (seed 000); each query's own entry is removed.
  # "heldout": separate query split, never trained on.
  c.protocol = "database"
  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "corel1k"
  c.dataset.manual_dir = data or config_util.shared_dataset("corel1k")
  c.dataset.database_split = "train"   # corel1k `train` = all 1,000 images.
  c.dataset.query_split = "train"
  c.models = corel_models(scale, c.dataset.manual_dir, "train", "", lk_sweep=options["sweep"],
                          **model_options(options))
  if weights:  # alexnet_weights=<file>: Fc8 is ImageNet's 1,000-d layer, as in the paper.
    c.models.alexnet = imported_alexnet(weights, c.dataset.manual_dir, "train")
  # Retrieval features: name -> "<model tag>:<endpoint>".
  c.features = ml_collections.ConfigDict({"F6": "lenet_lk1400:f6", "Fc8": "alexnet:fc8"})
  # AL = fuse(F6, Fc8). The choice was measured on corel_heldout:cpu (docs/RESULTS.md): plain
  # concatenation (the paper's) had the best mean mAP(Top10..Top50), 0.548 against 0.543 for
  # per-part L2 and 0.543 / 0.530 for L2 with F6 weighted 2 / 0.5; the spread is within noise.
  c.fusion = ml_collections.ConfigDict({"name": "AL", "parts": ("F6", "Fc8"),
                                        "normalize": "none", "weights": (1.0, 1.0)})
  # Every variant is also evaluated and reported (name -> normalize, weights).
  c.fusion_variants = ml_collections.ConfigDict({
      "concat": {"normalize": "none", "weights": (1.0, 1.0)},
      "l2": {"normalize": "l2", "weights": (1.0, 1.0)},
      "l2_w05": {"normalize": "l2", "weights": (0.5, 1.0)},
      "l2_w2": {"normalize": "l2", "weights": (2.0, 1.0)},
  })
  # The K sweep scores every trained width (none with sweep=off: K = 1400 only).
  c.lk_sweep = ml_collections.ConfigDict({
      "widths": lk_widths(scale, True) if options["sweep"] else (), "endpoint": "f6"})
  c.ks = (5, 10) if scale == "quick" else (10, 20, 30, 40, 50)
  c.recall_max = 100 if scale != "quick" else 20   # Fig. 4: recall at 1..recall_max returned.
  c.extract_batch_size = 50 if scale != "quick" else 20
  c.paper = ml_collections.ConfigDict({k: v for k, v in PAPER_TABLE1.items()})
  if options["pretrain"]:
    c.pretrain = pretrain_configs(c.models, scale, options["pretrain_data"])
  return c
