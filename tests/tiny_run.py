"""A one-step LeNet-L training run, for tests that need a trained workdir (launchers, jobs)."""

import ml_collections

from cbir_jax.train import trainer


def train_tiny_lenet(workdir) -> None:
  """Trains LeNet-L (K = 8) for one step on digits at 16x16 (input (16, 16, 1)) into workdir."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "off"
  c.dataset = ml_collections.ConfigDict({"name": "digits", "manual_dir": "", "image_size": 16,
                                         "train_split": "train", "eval_split": ""})
  c.model = ml_collections.ConfigDict({"name": "lenet_l", "kwargs": {"lk_features": 8}})
  c.batch_size = 32
  c.num_epochs = -1
  c.num_steps = 1
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "momentum": 0.9,
      "schedule": "constant", "warmup_steps": 0, "grad_clip_norm": 0.0})
  c.label_smoothing = 0.0
  c.augment = False
  c.log_every_steps = 1
  c.eval_every_steps = -1
  c.checkpoint_every_steps = 1
  c.keep_checkpoints = 1
  trainer.train_and_evaluate(c, str(workdir))
