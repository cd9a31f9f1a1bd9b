"""Seed 002 on CIFAR-10: schemes 1/2/3 for the R/I/M families (accuracy, retrieval mAP, time).

Run (paper scale: full backbones and DFS-Nets at 32x32 with CIFAR stems, 200 epochs; for
accelerators):
  python bin/reproduce.py --experiment=cifar10_schemes --workdir=runs/c10_schemes
CPU scale (the CPU-scale variant of each family, docs/MODELS.md; 8 epochs of the 50,000 training
images minus the validation tenth, each family at its validated peak rate, configs/cifar10.py's
CPU_PEAK; the 10,000 test queries against the 50,000-image database; about 1.5 hours on 2 cores
for all six networks):
  python bin/reproduce.py --experiment=cifar10_schemes:cpu --workdir=runs/c10_schemes_cpu
Tiny scale (the narrow *_tiny test variants, 300 steps of 64 on data_batch_1's 10,000 images;
a 2,000-image database and 500 queries; the table before 2026-11-28):
  python bin/reproduce.py --experiment=cifar10_schemes:tiny,families=inception_v3 \
      --workdir=runs/c10_schemes_tiny
GPU scale (the paper's full ResNet50 / InceptionV3 / MobileNetV2 and DFS-Nets with CIFAR stems,
bfloat16 compute, batch 512, 6 epochs by default (`epochs=N`), the whole 50,000-image training
split, 10,000 test queries, 50,000-image database, the CPU scale's query subsets for the b
choices, sweep and selection comparison; the data packed by bin/pack_dataset.py and read without
tfds; training all six about 7 minutes on one H100/H200 by a FLOP estimate, the whole-ranking
evaluation much longer while it is scored on the host: docs/RESULTS.md "Paper scale on one GPU",
which holds the device command, bin/gpu_reproduce.sh, and the estimate):
  python bin/reproduce.py --experiment=cifar10_schemes:gpu,data=runs/gpu_carry/cifar10_packed \
      --workdir=runs/c10_schemes_gpu
Smoke test (2 steps, 200/50 images):
  python bin/reproduce.py --experiment=cifar10_schemes:families=mobilenet_v2 --quick \
      --workdir=/tmp/c10_quick

Scheme 1: backbone trained, its pooled features ("pool"), exact Euclidean search.
Scheme 2: DFS-Net trained, its DFS features ("dfs"), exact Euclidean search.
Scheme 3: DFS-Net features ranked by information gain rate on the database, the top b kept,
mean-threshold hashed to b bits, Hamming search. b sweeps `retrieval.bits`; the headline b is
the one with the best mAP on the validation split (10 % of the training images, carved out before
training, searched against the rest); the paper's "about half of the original" dimension is in
the sweep. The paper's extra comparison, the plain backbone's features + IGR + hash, is reported
beside (b chosen the same way), and so are random and PCA selections in place of IGR (and IGR
with a redundancy penalty) at every b. Test queries decide nothing.
Data: split "train" (all 50,000 training images with ../shared/datasets/cifar10/train_jpeg; the
tiny scale uses "train_batches", data_batch_1's 10,000) and "test" (10,000), lossy JPEGs; the
database is the whole training split (the validation tenth included; at tiny and quick scale a
stratified seeded subset), the queries the test split. Each network evaluates on the validation
tenth every epoch, stops once it has not improved for `early_stopping_patience` + 1 epochs
(within the epoch budget) and hands on its checkpoint best on validation; classification
accuracy is reported on the whole test split at that checkpoint, never used for a decision. mAP is seed 002's "MAP": the mean over queries of the average precision over the whole
ranking (a query with no relevant item scores 0); mAP@k (top-k AP) is beside it.

DFS module layouts (issue 21): with "v1" (or "v1=<a>+<b>", those families only) each family's
DFS-Net is also trained with the module's v1 layout (docs/MODELS.md) and schemes 2 and 3 are
reported for both layouts; what docs/RESULTS.md's 8-epoch table shows (trained before the peak
rates were measured, so at peak 0.2 for every family):
  python bin/reproduce.py --experiment=cifar10_schemes:cpu,families=resnet50+inception_v3,\
v1=inception_v3,peak=0.2 --workdir=runs/c10_schemes_cpu

Arguments (comma separated): "cpu", "tiny", "quick" or "gpu"; "v1[=<a>+<b>]";
"families=<a>+<b>" (resnet50, inception_v3, mobilenet_v2; default all three); "data=<folder>";
"epochs=<N>" (cpu, gpu and paper scales: each network's epoch budget, instead of 8 / 6 / 200;
the CPU-scale networks train 8 epochs in 7-26 minutes, so up to ~20-60 epochs fit the hour per
network issue 17 allows); "peak=<lr>" (cpu, gpu and paper scales: every network's peak learning
rate instead of its recipe's, e.g. the one `cifar10_recipe` chose on validation). With `--quick`, "gpu" keeps its models, dtype and packed data
and takes the quick scale's steps and subsets (a CPU smoke test of the GPU path).
"""

import ml_collections

from cbir_jax import config_util

FAMILIES = ("resnet50", "inception_v3", "mobilenet_v2")
# Seed 002, Tables 1-3 (CIFAR-10): DFS-Net classification accuracy (%), scheme-3 retrieval mAP
# (%) and retrieval time (s) of the whole query set.
PAPER = {"resnet50": (87.10, 84.60, 12.52), "inception_v3": (88.80, 87.93, 12.77),
         "mobilenet_v2": (83.40, 77.74, 12.66)}


def v1_layout(arg: str) -> tuple[str, tuple[str, ...] | None]:
  """(arg without its v1 token, the families it names): "v1" (every family of the run) or
  "v1=<a>+<b>" also trains those families' DFS-Nets with the DFS module's v1 layout (tag
  dfs_<family>_v1) to compare with Fig. 2's; None without the token."""
  parts = [p.strip() for p in (arg or "").split(",")]
  rest, v1 = [], None
  for p in parts:
    key, _, value = p.partition("=")
    if p == "v1":
      v1 = FAMILIES
    elif key == "v1" and value and all(f in FAMILIES for f in value.split("+")):
      v1 = tuple(value.split("+"))
    else:
      rest.append(p)
  return ",".join(rest), v1


def parse_arg(arg: str, name: str) -> tuple[str, tuple[str, ...], str, int, bool, float]:
  """"cpu,families=a+b,data=/x" -> ("cpu", ("a", "b"), "/x", -1, False, 0.0);
  "gpu,epochs=4,quick,peak=0.4" -> ("gpu", FAMILIES, "", 4, True, 0.4): scale, families, data
  folder, epochs (-1: the scale's own), whether "quick" came beside "gpu" and the peak learning
  rate of every network (0: each recipe's own)."""
  scale, families, data, epochs, quick, peak = "", FAMILIES, "", -1, False, 0.0
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, _, value = part.partition("=")
    if part in ("cpu", "tiny", "quick", "gpu"):
      quick = quick or part == "quick"
      scale = "gpu" if "gpu" in (part, scale) else part
    elif key == "families" and value and all(f in FAMILIES for f in value.split("+")):
      families = tuple(value.split("+"))
    elif key == "data" and value:
      data = value
    elif key == "epochs" and value.isdigit() and int(value) > 0:
      epochs = int(value)
    elif key == "peak" and len(config_util.positive_rates(value)) == 1:
      peak = config_util.positive_rates(value)[0]
    else:
      raise ValueError(f"configs/experiments/{name}.py takes 'cpu', 'tiny', 'quick', 'gpu', "
                       f"'families=<{'+'.join(FAMILIES)} subset>', 'data=<folder>', "
                       f"'epochs=<N > 0>' and 'peak=<learning rate > 0>', got {part!r}")
  for option, value in (("epochs", epochs), ("peak", peak)):
    if value > 0 and scale not in ("cpu", "gpu", ""):
      raise ValueError(f"configs/experiments/{name}.py: '{option}={value:g}' is for the cpu, "
                       "gpu and paper scales (tiny and quick train a fixed number of steps), "
                       f"got scale {scale or 'paper'!r}")
  return scale, families, data, epochs, quick and scale == "gpu", peak


def schemes_config(name: str, arg: str, training_file: str, dataset_folder: str,
                   database_split: str, query_split: str) -> ml_collections.ConfigDict:
  """The schemes experiment over `training_file`'s recipes (configs/cifar10.py or caltech256)."""
  arg, with_v1 = v1_layout(arg)
  scale, families, data, epochs, gpu_quick, peak = parse_arg(arg, name)
  training = config_util.load_sibling(__file__, training_file)
  c = ml_collections.ConfigDict()
  c.name = name
  c.kind = "schemes"
  c.scale = (scale or "paper") + (" (quick)" if gpu_quick else "")
  c.seed = 0
  c.protocol = "heldout"
  c.dataset = ml_collections.ConfigDict()
  base = training.get_config("gpu" if scale == "gpu" else "")
  c.dataset.name = base.dataset.name
  c.dataset.manual_dir = data or (base.dataset.manual_dir if scale == "gpu"
                                  else config_util.shared_dataset(dataset_folder))
  c.dataset.database_split = database_split
  c.dataset.query_split = query_split
  c.families = families
  # Choices (scheme 3's b, the backbone comparison's b) are made on a seeded, stratified 10 % of
  # the training split that the models never train on (datasets.load_split's validation carve).
  c.validation_fraction = 0.1
  c.early_stopping_patience = 0 if scale == "quick" or gpu_quick else 2
  c.models = ml_collections.ConfigDict()
  for family in families:
    for tag in (family, "dfs_" + family):
      m = training.get_config(f"model={tag}" + {"": "", "cpu": ",cpu", "tiny": ",tiny",
                                                  "quick": ",tiny", "gpu": ",gpu"}[scale])
      m.dataset.manual_dir = c.dataset.manual_dir
      # Evaluated on the validation tenth every epoch; the checkpoint best there is the one
      # extracted; early stopping within the epoch budget; test accuracy reported only.
      config_util.select_on_validation(m, test_split=query_split,
                                       patience=c.early_stopping_patience,
                                       validation_fraction=c.validation_fraction)
      if epochs > 0:
        m.num_epochs = epochs
      if peak > 0:  # E.g. the peak cifar10_recipe chose on validation.
        m.optimizer.learning_rate = peak
      if scale == "quick" or gpu_quick:
        m.batch_size = 16
        m.num_steps = 2
        m.optimizer.warmup_steps = 0
        m.eval_every_steps = 2
        m.log_every_steps = 1
        m.checkpoint_every_steps = 100
        m.augment = False
      c.models[tag] = m
      if with_v1 and tag.startswith("dfs_") and family in with_v1:
        v1 = ml_collections.ConfigDict(m.to_dict())
        v1.model.kwargs.layout = "v1"
        c.models[tag + "_v1"] = v1
  c.endpoints = ml_collections.ConfigDict({"backbone": "pool", "dfs": "dfs"})
  c.retrieval = ml_collections.ConfigDict()
  # -1: every image of the split. Subsets are stratified and seeded by `seed`.
  sizes = "quick" if gpu_quick else scale
  c.retrieval.num_database = {"": -1, "cpu": -1, "gpu": -1, "tiny": 2000, "quick": 200}[sizes]
  c.retrieval.num_queries = {"": -1, "cpu": -1, "gpu": -1, "tiny": 500, "quick": 50}[sizes]
  # Validation queries (a stratified subset of the validation tenth) for the b choices, and
  # the test queries of the b sweep and the selection comparison (the headline schemes use all
  # of them): whole-ranking mAP over 50,000 images costs ~1 min per 10,000 queries on 2 cores.
  # GPU scale: the CPU scale's subsets (the evaluation is scored on the host either way).
  c.retrieval.num_validation = {"": -1, "cpu": 1000, "gpu": 1000, "tiny": 500, "quick": 50}[sizes]
  c.retrieval.sweep_queries = {"": -1, "cpu": 2000, "gpu": 2000, "tiny": -1, "quick": -1}[sizes]
  c.retrieval.bits = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)  # clipped to the feature width
  c.retrieval.scheme3_bits = -1     # -1: half the DFS feature width.
  # The IGR / IGR-with-redundancy-penalty / random / PCA comparison on the DFS features: these b
  # and the chosen one (clipped to the width), random selections averaged over random_trials.
  c.retrieval.selection_bits = (32, 128) if sizes in ("cpu", "gpu") else (16, 64, 256)
  c.retrieval.random_trials = 3 if sizes != "quick" else 2
  c.retrieval.hash_threshold = "dimension"
  c.ks = (10, 50, 100) if sizes != "quick" else (5, 10)
  c.recall_max = 100 if sizes != "quick" else 20
  c.extract_batch_size = {"cpu": 500, "gpu": 1000, "quick": 25}.get(sizes, 250)
  c.paper = ml_collections.ConfigDict({f: PAPER[f] for f in families if f in PAPER})
  return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the CIFAR-10 schemes experiment for `arg` (see the module docstring)."""
  return schemes_config("cifar10_schemes", arg, "../cifar10.py", "cifar10", "train", "test")
