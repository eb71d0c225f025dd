"""The one mesh: every device of every process on a single 'data' axis.

Batches are sharded P('data'); params, EMA and optimizer state are replicated
P(). The same code runs on 1 CPU, 8 TPU cores or many hosts.
"""
from __future__ import annotations

import xla_cpu  # noqa: F401  (before JAX starts: XLA:CPU flags)
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from errors import ConfigError


def make_mesh() -> Mesh:
  """A 1-D mesh over all global devices, axis name 'data'."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, field: str) -> None:
  """The global batch must split evenly over devices (and hence processes)."""
  n = jax.device_count()
  if batch_size % n:
    raise ConfigError(f'{field}={batch_size} is not divisible by the device count {n}; '
                      f'use a multiple of {n}')


def check_microbatches(batch_size: int, microbatches: int, field: str,
                       network_parts: int = 0) -> None:
  """Each device's share of the batch must split into `microbatches` equal parts, and
  each of those into `network_parts` (0: chosen to fit, `train_state.auto_network_parts`)."""
  per_device = batch_size // jax.device_count()
  if per_device % microbatches:
    raise ConfigError(f'training.microbatches={microbatches} does not divide the per-device '
                      f'batch {per_device} ({field}={batch_size} over {jax.device_count()} '
                      f'devices); use a divisor of {per_device}')
  rows = per_device // microbatches
  if network_parts and rows % network_parts:
    raise ConfigError(f'training.network_parts={network_parts} does not divide the '
                      f'{rows} rows per device of each microbatch ({field}={batch_size}, '
                      f'training.microbatches={microbatches}); use a divisor of {rows}, '
                      'or 0 (automatic)')


def local_rows(n: int) -> slice:
  """This process's rows [p b, (p + 1) b) of n global rows, b = n // process count.

  The process-local part of a global batch that every process holds or draws in
  full, in the row order `global_batch` assembles (process p's devices hold it).
  """
  b = n // jax.process_count()
  return slice(jax.process_index() * b, (jax.process_index() + 1) * b)


def global_batch(local: np.ndarray, mesh: Mesh, axis: int = 0) -> jax.Array:
  """Assembles a global array, sharded on `axis`, from each process's local slice.

  Args:
    local: this process's slice of the global batch along `axis`.
    axis: the batch axis (1 for stacked [n_jitted_steps, B, ...] batches).
  """
  spec = P(*([None] * axis + ['data']))
  return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local)


def from_host(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a host array that every process holds in full (e.g. a held-out
  set): each process places only the slices its own devices hold."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
  """The full value of a (possibly multi-host) sharded array, on every host."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
