"""Data parallelism: a 1-D ("data",) device mesh, shardings, global batches, multi-host set-up."""

from __future__ import annotations

import os
from typing import Any, Sequence

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = "data"

# Environment variables that mean "this process is one of several": set by the launcher
# (JAX_COORDINATOR_ADDRESS for GPU hosts / SLURM-less clusters), SLURM, or Open MPI.
_MULTIPROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def initialize_distributed(mode: str = "auto") -> bool:
  """Calls `jax.distributed.initialize()` when this is a multi-process run; idempotent.

  Must run before anything else touches the devices. `jax.distributed.initialize()` with no
  arguments finds the coordinator, process count and id itself on Cloud TPU pod slices, SLURM
  and Open MPI, or from the variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (set those on plain GPU hosts; see BUILD.md).

  Args:
    mode: "auto" (initialise when one of JAX_COORDINATOR_ADDRESS, SLURM_NTASKS > 1,
      OMPI_COMM_WORLD_SIZE > 1 is set, or on a TPU VM with TPU_WORKER_HOSTNAMES naming several
      hosts), "on" (always), "off" (never).

  Returns:
    True when the distributed runtime is (now) initialised.

  Raises:
    ValueError: unknown mode.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"distributed must be 'auto', 'on' or 'off', got {mode!r}")
  if mode == "off":
    return False
  if jax.distributed.is_initialized():
    return True
  wanted = mode == "on"
  if mode == "auto":
    wanted = bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    for name in _MULTIPROCESS_ENV[1:]:
      wanted |= int(os.environ.get(name, "1") or 1) > 1
    wanted |= len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
  if wanted:
    jax.distributed.initialize()
    logging.info("jax.distributed initialised: process %d of %d, %d global devices",
                 jax.process_index(), jax.process_count(), jax.device_count())
  return wanted


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis "data" over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device, got none")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device of `mesh` (parameters, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the "data" axis of `mesh`."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
  """Raises ValueError unless the global batch splits evenly over the devices and processes."""
  devices = mesh.devices.size
  if batch_size < 1 or batch_size % devices:
    raise ValueError(f"{name} must be a positive multiple of the number of devices ({devices}), "
                     f"got {batch_size}")
  if batch_size % jax.process_count():
    raise ValueError(f"{name} must be divisible by the process count ({jax.process_count()}), "
                     f"got {batch_size}")


def global_batch(local_batch: dict[str, Any], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles this process's slice of each leaf into one global array sharded by `sharding`.

  Every process passes its own rows (in process order, as `data.pipeline.train_batches` and
  `eval_batches` produce them); with one process this is a device_put that splits the batch
  over the local devices.

  Args:
    local_batch: {name: array[b_local, ...]}, b_local = global batch // process_count.
    sharding: usually `batch_sharding(mesh)`.

  Returns:
    {name: jax.Array[b_local * process_count, ...]} sharded over the mesh.
  """
  count = jax.process_count()
  return {k: jax.make_array_from_process_local_data(
      sharding, v, (np.shape(v)[0] * count,) + tuple(np.shape(v)[1:]))
          for k, v in local_batch.items()}
