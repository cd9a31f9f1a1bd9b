"""Data parallelism: a 1-D ("data",) device mesh, shardings, global batches, multi-host set-up."""

from __future__ import annotations

import os
from typing import Any, Sequence

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = "data"

# Environment variables that mean "this process is one of several": set by the user on plain
# GPU/CPU hosts (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES), by SLURM, or by Open MPI.
_MULTIPROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "SLURM_NTASKS",
                     "OMPI_COMM_WORLD_SIZE")


def initialize_distributed(mode: str = "auto") -> bool:
  """Calls `jax.distributed.initialize()` when this is a multi-process run; idempotent.

  Must run before anything else touches the devices. `jax.distributed.initialize()` finds the
  coordinator, process count and id itself on Cloud TPU pod slices, SLURM and Open MPI; on
  plain hosts set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
  JAX_PROCESS_ID on every process (passed on here; see BUILD.md).

  Args:
    mode: "auto" (initialise when JAX_COORDINATOR_ADDRESS is set, or JAX_NUM_PROCESSES,
      SLURM_NTASKS or OMPI_COMM_WORLD_SIZE is > 1, or TPU_WORKER_HOSTNAMES names several
      hosts), "on" (always: use it on TPU pod slices, whose hosts are found from the metadata
      server), "off" (never).

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
    kwargs = {}
    if os.environ.get("JAX_NUM_PROCESSES"):
      kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if os.environ.get("JAX_PROCESS_ID"):
      kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
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

  Every process of the mesh passes its own rows (in process order, as
  `data.input_pipeline.train_batches` and `eval_batches` produce them); with one process (or a mesh of
  this process's devices only) this is a device_put that splits the batch over the devices.

  Args:
    local_batch: {name: array[b_local, ...]}, b_local = global batch // (processes in the mesh).
    sharding: usually `batch_sharding(mesh)`.

  Returns:
    {name: jax.Array[b_global, ...]} sharded over the mesh, b_global = b_local * (devices in the
    mesh) / (this process's devices in it).
  """
  devices = sharding.device_set
  local = sum(d.process_index == jax.process_index() for d in devices)
  if local == 0:
    raise ValueError("the sharding's mesh holds none of this process's devices")
  return {k: jax.make_array_from_process_local_data(
      sharding, v, (np.shape(v)[0] * len(devices) // local,) + tuple(np.shape(v)[1:]))
          for k, v in local_batch.items()}
