"""bin/reproduce.py --quick end to end on a generated Corel-like folder (no shared data needed)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import pretrained_files

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("africans", "beaches", "buildings", "buses", "dinosaurs", "elephants", "flowers",
           "horses", "mountains", "food")


def _reproduce(*args: str, tfds_dir: Path, **env_vars: str) -> subprocess.CompletedProcess:
  # A private tfds data_dir: the tiny folder must not replace a prepared copy of the real set.
  env = dict(os.environ, PYTHONUNBUFFERED="1", TFDS_DATA_DIR=str(tfds_dir), **env_vars)
  return subprocess.run([sys.executable, str(REPO / "bin" / "reproduce.py"), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def _experiment_module(name: str):
  """configs/experiments/<name>.py, loaded by path (as bin/reproduce.py loads it)."""
  spec = importlib.util.spec_from_file_location(
      name, REPO / "configs" / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def corel_folder(tmp_path_factory) -> Path:
  """10 classes x 6 JPEGs of 24x36, each class a noisy colour: 60 images named <id>.jpg."""
  root = tmp_path_factory.mktemp("corel")
  rng = np.random.default_rng(0)
  for c, name in enumerate(CLASSES):
    (root / name).mkdir()
    base = rng.integers(0, 256, 3)
    for i in range(6):
      pixels = np.clip(base + rng.normal(0, 30, (24, 36, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(root / name / f"{c * 100 + i}.jpg")
  return root


def test_quick_corel_paper_protocol_then_resume(tmp_path, corel_folder):
  workdir = tmp_path / "w"
  args = (f"--experiment=corel_paper:data={corel_folder}", "--quick", f"--workdir={workdir}")
  proc = _reproduce(*args, tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Table 1" in proc.stdout and "AL fusion variants" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["protocol"] == "database" and results["scale"] == "quick"
  for name in ("AL", "F6", "Fc8"):
    row = results["table1"][name]
    # Every image queries the 60-image database; its own entry is removed from its list.
    assert row["num_queries"] == 60 and row["database_size"] == 60
    assert len(row["recall_curve"]) == 20
    for key in ("paper_map@5", "paper_map@10", "map"):
      assert 0.0 <= row["metrics"][key] <= 1.0
    # 6 images per class, self excluded: 5 relevant, so Top10 precision is at most 0.5.
    assert row["metrics"]["paper_map@10"] <= 0.5 + 1e-9
    assert np.all(np.diff(row["recall_curve"]) >= 0) and row["recall_curve"][-1] <= 1.0
  assert set(results["fusion_variants"]) >= {"AL[concat]", "AL[l2]", "AL"}
  assert [r["value"] for r in results["lk_sweep"]["rows"]] == [1400]
  for png in ("map_vs_k.png", "recall_vs_returned.png", "pr_curves.png", "lk_sweep.png"):
    with Image.open(workdir / png) as im:
      assert im.format == "PNG"
  assert (workdir / "results.md").read_text().startswith("## corel_paper")

  # A second run finds every stage's outputs: nothing retrains, the numbers are the same.
  marker = workdir / "train" / "lenet_lk1400" / "train_result.json"
  before = marker.stat().st_mtime_ns
  again = _reproduce(*args, tfds_dir=tmp_path / "tfds")
  assert again.returncode == 0, again.stderr[-3000:]
  assert marker.stat().st_mtime_ns == before
  assert "stage train" not in again.stderr and "stage extract" not in again.stderr
  rerun = json.loads((workdir / "results.json").read_text())
  for name in ("AL", "F6", "Fc8"):
    assert rerun["table1"][name]["metrics"] == results["table1"][name]["metrics"]

  # bin/evaluate.py on the saved F6 features reproduces the experiment's F6 numbers.
  out = tmp_path / "eval"
  proc = subprocess.run(
      [sys.executable, str(REPO / "bin" / "evaluate.py"), "--ks=5,10", "--recall_max=20",
       f"--database={workdir / 'features' / 'lenet_lk1400_f6_train.npy'}", f"--out={out}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "each query's own entry removed" in proc.stdout
  evaluated = json.loads((out / "results.json").read_text())
  assert evaluated["metrics"] == pytest.approx(results["table1"]["F6"]["metrics"])
  assert (out / "pr_curve.png").exists() and (out / "recall_vs_returned.png").exists()


def test_bad_experiment_and_missing_data_fail_clearly(tmp_path):
  proc = _reproduce("--experiment=corel_nope", f"--workdir={tmp_path}", tfds_dir=tmp_path)
  assert proc.returncode == 2 and "--experiment must be one of" in proc.stderr
  empty = tmp_path / "no_datasets"
  empty.mkdir()
  proc = _reproduce("--experiment=caltech256_schemes", f"--workdir={tmp_path}",
                    tfds_dir=tmp_path, CBIR_SHARED_DATASETS=str(empty))
  assert proc.returncode == 2 and "256_ObjectCategories" in proc.stderr


def test_quick_heldout_chooses_on_validation_over_two_seeds(tmp_path, corel_folder):
  workdir = tmp_path / "h"
  proc = _reproduce(f"--experiment=corel_heldout:data={corel_folder}", "--quick",
                    f"--workdir={workdir}", "--seeds=0,1", tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mean ± std over seeds 0, 1" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["seeds"] == [0, 1] and set(results["runs"]) == {"0", "1"}
  mean = results["aggregate"]["mean"]["table1"]["AL"]["metrics"]["paper_map@5"]
  runs = [results["runs"][s]["table1"]["AL"]["metrics"]["paper_map@5"] for s in ("0", "1")]
  assert mean == pytest.approx(np.mean(runs))
  for seed in ("0", "1"):
    choice = results["runs"][seed]["fusion_choice"]
    assert choice["chosen_by"].startswith("validation mAP") and choice["variant"]
    # 10 classes x 3 database images: 1 per class is carved out for validation.
    assert results["runs"][seed]["table1"]["AL"]["database_size"] == 20
    # DBA / alpha-QE of the chosen AL: chosen on validation mAP over the config's grid, the
    # sealed queries scored once with the choice, the plain AL kept beside it.
    expansion = results["runs"][seed]["expansion"]
    assert len(expansion["validation_scores"]) == 4 * 5   # k_dba x k_qe, (0, 0) = "none"
    best = max(expansion["validation_scores"].values())
    assert expansion["validation_scores"][expansion["choice"]] == best
    assert expansion["chosen_by"].startswith("validation mAP")
    assert (expansion["table"]["without"]["metrics"]
            == results["runs"][seed]["table1"]["AL"]["metrics"])
    assert expansion["table"]["with"]["database_size"] == 20
    # Every network evaluated the validation split, handed on its best checkpoint there, and
    # reported its query accuracy only once, at that checkpoint.
    for tag in ("lenet_lk1400", "alexnet"):
      run = workdir / f"seed_{seed}" / "train" / tag
      config = json.loads((run / "config.json").read_text())
      assert config["dataset"]["eval_split"] == "validation"
      assert config["dataset"]["test_split"] == "query"
      selection = json.loads((run / "selection.json").read_text())
      assert selection["rule"] == "best" and selection["metric"] == "eval_accuracy"
      trained = json.loads((run / "train_result.json").read_text())
      assert trained["selected_step"] == selection["step"] and "test_accuracy" in trained
  assert "re-ranked with the DBA / alpha-QE pair each seed chose" in (
      workdir / "results.md").read_text()
  assert "with database-side augmentation and query expansion" in (
      workdir / "seed_0" / "results.md").read_text()
  with_ = [results["runs"][s]["expansion"]["table"]["with"]["metrics"]["map"] for s in "01"]
  assert results["aggregate"]["mean"]["expansion"]["table"]["with"]["metrics"]["map"] == (
      pytest.approx(np.mean(with_)))
  proc = _reproduce(f"--experiment=corel_heldout:data={corel_folder}", "--quick",
                    f"--workdir={tmp_path / 'x'}", "--seeds=0,0", tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 2 and "--seeds must be distinct" in proc.stderr


def test_quick_corel_with_imported_imagenet_alexnet(tmp_path, corel_folder):
  """alexnet_weights=<file>: Fc8 comes from the imported network (1,000-d), nothing trains it."""
  pretrained_files.write_alexnet_safetensors(tmp_path / "alexnet.safetensors",
                                             np.random.default_rng(3))
  workdir = tmp_path / "w"
  proc = _reproduce(f"--experiment=corel_paper:data={corel_folder},"
                    f"alexnet_weights={tmp_path / 'alexnet.safetensors'}", "--quick",
                    f"--workdir={workdir}", tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["train"]["alexnet"] == {"imported": "alexnet.safetensors"}
  assert not (workdir / "train" / "alexnet").exists()
  fc8 = np.load(workdir / "features" / "alexnet_fc8_train.npy")
  assert fc8.shape == (60, 1000)
  sidecar = json.loads((workdir / "features" / "alexnet_fc8_train.json").read_text())
  assert sidecar["provenance"]["sources"][0]["weights"]["file"] == "alexnet.safetensors"
  assert "AL" in results["table1"]


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory) -> Path:
  """A tiny CIFAR-10 in the shared JPEG layout: 10 training and 2 test images per class."""
  from cbir_jax.data.builders import cifar10_local  # pylint: disable=g-import-not-at-top
  cifar = tmp_path_factory.mktemp("cifar10")
  rng = np.random.default_rng(1)
  for name in cifar10_local.CLASS_NAMES:
    for split, n in (("train_jpeg", 10), ("test_batch_jpeg", 2)):
      (cifar / split / name).mkdir(parents=True)
      for i in range(n):
        pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(cifar / split / name / f"{i:04d}.jpg")
  return cifar


def test_quick_heldout_pretrains_once_on_cifar10_and_seeds_start_from_it(tmp_path, corel_folder,
                                                                          cifar_folder):
  """pretrain=cifar10: each network first trains on (a tiny) CIFAR-10 at its own input size,
  once, in <workdir>/pretrain/<tag>; every seed's fine-tuning starts from that run's selected
  checkpoint (its config names the folder, its checkpoints the weights' hash)."""
  from cbir_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  cifar = cifar_folder
  workdir = tmp_path / "p"
  proc = _reproduce(f"--experiment=corel_heldout:data={corel_folder},pretrain=cifar10,"
                    f"pretrain_data={cifar}", "--quick", f"--workdir={workdir}", "--seeds=0,1",
                    tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(p.name for p in (workdir / "pretrain").iterdir()) == ["alexnet", "lenet_lk1400"]
  for tag in ("alexnet", "lenet_lk1400"):
    source = workdir / "pretrain" / tag
    pre_config = json.loads((source / "config.json").read_text())
    assert pre_config["dataset"]["name"] == "cifar10_local"
    assert pre_config["dataset"]["manual_dir"] == str(cifar)
    assert (source / "train_result.json").exists()
    for seed in ("0", "1"):
      run = workdir / f"seed_{seed}" / "train" / tag
      config = json.loads((run / "config.json").read_text())
      assert config["init_from"] == str(source) and config["seed"] == int(seed)
      # The fine-tuning runs at the pretraining run's input size and network.
      assert config["dataset"]["image_size"] == pre_config["dataset"]["image_size"]
      assert config["model"] == pre_config["model"]
      ckpt = checkpoint_lib.Checkpointer(str(run / "checkpoints"))
      assert ckpt.read_meta()["init_from"]["format"] == "cbir_jax"
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["runs"]["0"]["config"]["pretrain_results"]) == {"alexnet", "lenet_lk1400"}
  assert not (workdir / "seed_0" / "pretrain").exists()


def test_pretrain_options_are_checked():
  module = _experiment_module("corel_paper")
  with pytest.raises(ValueError, match="pretrain_data= needs pretrain=cifar10"):
    module.parse_options("small,pretrain_data=/x", "corel_heldout")
  with pytest.raises(ValueError, match="drop alexnet_init="):
    module.parse_options("small,pretrain=cifar10,alexnet_init=/w", "corel_heldout")
  with pytest.raises(ValueError, match="'pretrain=<cifar10>'"):
    module.parse_options("small,pretrain=imagenet", "corel_heldout")


def test_sweep_off_trains_k_1400_only_at_the_papers_sizes():
  module = _experiment_module("corel_paper")
  full = module.get_config("cpu,data=/x")
  assert sorted(full.models) == sorted(["alexnet"] + [f"lenet_lk{k}" for k in module.LK_SWEEP])
  assert tuple(full.lk_sweep.widths) == module.LK_SWEEP
  off = module.get_config("cpu,data=/x,sweep=off")
  assert sorted(off.models) == ["alexnet", "lenet_lk1400"]
  assert tuple(off.lk_sweep.widths) == ()
  # Same networks and sizes as the full run, only the sweep's extra widths are gone.
  assert off.models.lenet_lk1400.to_dict() == full.models.lenet_lk1400.to_dict()
  assert tuple(off.models.lenet_lk1400.dataset.image_size) == (256, 384)
  assert off.models.alexnet.dataset.image_size == 227
  with pytest.raises(ValueError, match="'sweep=off', .*, got 'sweep=on'"):
    module.parse_options("cpu,sweep=on", "corel_paper")


def test_quick_corel_recipe_chooses_on_mean_validation_accuracy(tmp_path, corel_folder):
  workdir = tmp_path / "r"
  proc = _reproduce(f"--experiment=corel_recipe:data={corel_folder}", "--quick",
                    "--seeds=0,1", f"--workdir={workdir}", tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["seeds"] == [0, 1]
  for seed in ("0", "1"):
    run = results["runs"][seed]
    assert set(run["rows"]) == {"adam_cosine", "sgd_step"}
    for tag, row in run["rows"].items():
      assert 0.0 <= row["val_accuracy"] <= 1.0 and 0.0 <= row["test_accuracy"] <= 1.0
      # Each recipe trained with the validation carve and selected its checkpoint on it.
      config = json.loads((workdir / f"seed_{seed}" / "train" / tag / "config.json").read_text())
      assert config["dataset"]["eval_split"] == "validation"
      assert config["dataset"]["validation_fraction"] == 0.1
      assert config["checkpoint_selection"] == "best"
    sgd = json.loads((workdir / f"seed_{seed}" / "train" / "sgd_step" / "config.json").read_text())
    assert sgd["optimizer"]["name"] == "sgd" and sgd["optimizer"]["schedule"] == "step"
  mean = results["aggregate"]["mean"]["rows"]
  for tag in ("adam_cosine", "sgd_step"):
    vals = [results["runs"][s]["rows"][tag]["val_accuracy"] for s in ("0", "1")]
    assert mean[tag]["val_accuracy"] == pytest.approx(np.mean(vals))
  best = max(mean, key=lambda t: mean[t]["val_accuracy"])
  assert results["aggregate"]["choice"]["recipe"] == best
  assert "Chosen on mean validation accuracy" in (workdir / "results.md").read_text()
  with Image.open(workdir / "recipes.png") as im:
    assert im.format == "PNG"

  lenet = tmp_path / "l"
  proc = _reproduce(f"--experiment=corel_recipe:data={corel_folder},net=lenet_l", "--quick",
                    f"--workdir={lenet}", tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((lenet / "results.json").read_text())
  assert set(results["rows"]) == {"adam_1e-4", "adam_3e-4", "adam_1e-3"}
  for tag, peak in (("adam_1e-4", 1e-4), ("adam_3e-4", 3e-4), ("adam_1e-3", 1e-3)):
    config = json.loads((lenet / "train" / tag / "config.json").read_text())
    assert config["model"]["name"] == "lenet_l" and config["optimizer"]["name"] == "adam"
    assert config["optimizer"]["learning_rate"] == pytest.approx(peak)


def test_recipes_choose_on_validation_never_on_test():
  from cbir_jax.experiments import recipes  # pylint: disable=import-outside-toplevel
  rows = {"a": {"val_accuracy": 0.5, "test_accuracy": 0.9},
          "b": {"val_accuracy": 0.6, "test_accuracy": 0.1}}
  assert recipes.choose(rows)["recipe"] == "b"
  # A tie goes to the incumbent (the configs' recipe), else to the first in config order.
  assert recipes.choose({"x": {"val_accuracy": 0.5}, "y": {"val_accuracy": 0.5}})["recipe"] == "x"
  tied = {"x": {"val_accuracy": 0.5}, "y": {"val_accuracy": 0.5}, "z": {"val_accuracy": 0.4}}
  assert recipes.choose(tied, incumbent="y")["recipe"] == "y"
  assert recipes.choose(tied, incumbent="z")["recipe"] == "x"   # no tie for z: evidence wins
  module = _experiment_module("corel_recipe")
  config = module.get_config("data=/x")
  recipes.check(config)
  config.models.sgd_step.dataset.eval_split = "query"
  with pytest.raises(ValueError, match="recipe 'sgd_step' must evaluate on a validation split"):
    recipes.check(config)
  with pytest.raises(ValueError, match="got 'sgd'"):
    module.get_config("sgd")
  with pytest.raises(ValueError, match="got 'net=vgg'"):
    module.get_config("net=vgg")
  lenet = module.get_config("data=/x,net=lenet_l")
  assert tuple(lenet.models["adam_3e-4"].dataset.image_size) == (64, 96)
  assert lenet.models["adam_3e-4"].num_epochs == 30


def test_corel_recipe_at_paper_sizes_trains_the_heldout_cpu_networks():
  module = _experiment_module("corel_recipe")
  heldout = _experiment_module("corel_heldout").get_config("cpu,data=/x")
  alexnet = module.get_config("data=/x,net=alexnet,sizes=paper")
  assert alexnet.variant == "net=alexnet,sizes=paper"
  assert set(alexnet.models) == {"sgd_step", "adam_1e-4", "adam_3e-4"}
  for tag, m in alexnet.models.items():
    assert m.model.name == "alexnet" and m.dataset.image_size == 227 and m.num_epochs == 30
    assert m.dataset.eval_split == "validation" and m.dataset.validation_fraction == 0.1
  # The adopted recipe (Adam 1e-4) is exactly the network the held-out headline trains.
  assert alexnet.models["adam_1e-4"].to_dict() == heldout.models.alexnet.to_dict()
  for tag, want in (("adam_3e-4", ("adam", 3e-4, "cosine", 0.0)),
                    ("sgd_step", ("sgd", 0.01, "step", 5e-4))):
    other = alexnet.models[tag].to_dict()
    base = heldout.models.alexnet.to_dict()
    assert (other["optimizer"].pop("name"), other["optimizer"].pop("learning_rate"),
            other["optimizer"].pop("schedule"), other["optimizer"].pop("weight_decay")) == want
    for key in ("learning_rate", "name", "schedule", "weight_decay"):
      base["optimizer"].pop(key)
    assert other == base   # Only the optimizer differs.
  lenet = module.get_config("data=/x,net=lenet_l,sizes=paper")
  assert set(lenet.models) == {"adam_1e-4", "adam_3e-4", "adam_1e-3"}
  assert lenet.models["adam_1e-3"].to_dict() == heldout.models.lenet_lk1400.to_dict()
  for tag, peak in (("adam_1e-4", 1e-4), ("adam_3e-4", 3e-4)):
    m = lenet.models[tag].to_dict()
    assert m["optimizer"].pop("learning_rate") == pytest.approx(peak)
    base = heldout.models.lenet_lk1400.to_dict()
    base["optimizer"].pop("learning_rate")
    assert m == base
  assert "lenet_l at 256x384, 30 epochs" in lenet.description
  # peaks= picks LeNet-L's rates; the same rate is the same training config (and tag).
  two = module.get_config("data=/x,net=lenet_l,sizes=paper,peaks=3e-4+1e-3")
  assert set(two.models) == {"adam_3e-4", "adam_1e-3"} and two.variant.endswith(
      "peaks=3e-4+1e-3")
  for tag in two.models:
    assert two.models[tag].to_dict() == lenet.models[tag].to_dict()
  assert set(module.get_config("data=/x,net=lenet_l,peaks=1.5e-3").models) == {"adam_1p5e-3"}
  for bad, message in (("net=alexnet,peaks=1e-3", "add net=lenet_l"),
                       ("net=lenet_l,peaks=0", "got 'peaks=0'"),
                       ("net=lenet_l,peaks=1e-3+1e-3", "got 'peaks=1e-3+1e-3'")):
    with pytest.raises(ValueError, match=re.escape(message)):
      module.get_config(bad)
  # The small sizes stay the default; a bad size is named.
  assert module.get_config("data=/x,net=lenet_l").models["adam_3e-4"].dataset.image_size == (
      64, 96)
  with pytest.raises(ValueError, match="got 'sizes=huge'"):
    module.get_config("sizes=huge")
  # The incumbent is the recipe the configs train with (the headline's networks).
  assert alexnet.incumbent == "adam_1e-4" and lenet.incumbent == "adam_1e-3"
  assert alexnet.models[alexnet.incumbent].to_dict() == heldout.models.alexnet.to_dict()
  assert lenet.models[lenet.incumbent].to_dict() == heldout.models.lenet_lk1400.to_dict()
  assert module.get_config("data=/x").incumbent == "adam_cosine"
  cifar = _experiment_module("cifar10_recipe").get_config("data=/x,family=mobilenet_v2,"
                                                          "peaks=0.05+0.1+0.2")
  assert cifar.incumbent == "peak_0p1"   # configs/cifar10.py's CPU_PEAK for M
  assert _experiment_module("cifar10_recipe").get_config(
      "data=/x,family=mobilenet_v2,peaks=0.05+0.2").incumbent == ""
  quick = module.get_config("data=/x,net=alexnet,sizes=paper,quick")
  assert all(m.model.name == "alexnet_tiny" and m.num_steps == 2 for m in quick.models.values())


def test_quick_cifar10_recipe_compares_peak_rates_on_validation(tmp_path, cifar_folder):
  workdir = tmp_path / "c"
  # 0.05 and R's configured peak (configs/cifar10.py's CPU_PEAK), which wins ties.
  from cbir_jax import config_util  # pylint: disable=import-outside-toplevel
  own = config_util.load_sibling(str(REPO / "configs" / "x.py"), "cifar10.py").CPU_PEAK[
      "resnet50"]
  own_tag = f"peak_{own:g}".replace(".", "p")
  proc = _reproduce(f"--experiment=cifar10_recipe:data={cifar_folder},family=resnet50,"
                    f"peaks=0.05+{own:g}", "--quick", f"--workdir={workdir}",
                    tfds_dir=tmp_path / "tfds")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["rows"]) == {"peak_0p05", own_tag}
  for tag, peak in (("peak_0p05", 0.05), (own_tag, own)):
    config = json.loads((workdir / "train" / tag / "config.json").read_text())
    assert config["model"]["name"] == "resnet_cpu"
    assert config["optimizer"]["learning_rate"] == peak
    assert config["dataset"]["eval_split"] == "validation"
    assert config["dataset"]["test_split"] == "test"
  vals = {t: r["val_accuracy"] for t, r in results["rows"].items()}
  # A tie keeps the configs' peak (R's CPU_PEAK).
  assert results["choice"]["incumbent"] == own_tag
  assert results["choice"]["recipe"] == max(vals, key=lambda t: (vals[t], t == own_tag))
  module = _experiment_module("cifar10_recipe")
  assert sorted(module.get_config("").models) == ["peak_0p1", "peak_0p2", "peak_0p4"]
  for bad in ("peaks=0.1+x", "peaks=0.1+0.1", "peaks=-1", "family=vgg"):
    with pytest.raises(ValueError, match=re.escape(repr(bad.partition("=")[2]))
                       if bad.startswith("peaks") else re.escape(repr(bad))):
      module.get_config(bad)
