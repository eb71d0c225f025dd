"""One restore for every mode: a run directory -> SDE, model, mesh, data shape, EMA params, score.

`restore_run(config, workdir)` is what `--mode sample`, `likelihood`, `eval`, `inpaint`,
`colorize`, `dmcmc`, guided sampling and the benchmarks call instead of rebuilding that by
hand. It restores the newest readable checkpoint (or `step`) straight into its replicated
device layout from an abstract TrainState built by `jax.eval_shape`: no network is
initialised first. It refuses an imported checkpoint whose required model options the
config lacks (`checkpointing.check_import_record`) and a workdir without checkpoints
(CheckpointError), before anything is written.

This module is also the one definition of a fresh TrainState's structure (`init_fn`),
which `train.init_state` runs and `abstract_state` only traces, so sampling never imports
training.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding

import checkpointing
import datasets
import optim
import parallel
import sde_lib
from train_state import TrainState
from models import create_model
from models import utils as mutils

Params = Any


def data_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Per-example shape: (data.dim,) for toy data, (H, W, C) for images."""
  d = config.data
  if d.dataset in datasets.TOYS:
    return (d.dim,)
  return (d.image_size, d.image_size, d.num_channels)


def init_state_rng(config: ml_collections.ConfigDict) -> jax.Array:
  """The TrainState.rng a fresh run of `config` starts with (`init_fn`'s second key)."""
  return jax.random.split(jax.random.PRNGKey(config.seed))[1]


def init_fn(config: ml_collections.ConfigDict, model, optimizer,
            shape: tuple[int, ...]) -> Callable[[jax.Array], TrainState]:
  """`init(PRNGKey(config.seed)) -> TrainState` of a fresh run: step 0, EMA = params."""

  def init(key):
    init_key, state_key = jax.random.split(key)   # state_key == init_state_rng(config)
    x = jnp.zeros((1,) + tuple(shape), jnp.float32)
    params = model.init(init_key, x, jnp.zeros((1,)), train=False)['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
                      opt_state=optimizer.init(params), rng=state_key)

  return init


def abstract_state(config: ml_collections.ConfigDict, model, shape: tuple[int, ...],
                   mesh: Mesh) -> TrainState:
  """The TrainState's ShapeDtypeStructs, replicated on `mesh`: traced, never computed."""
  init = init_fn(config, model, optim.get_optimizer(config), shape)
  tree = jax.eval_shape(init, jax.ShapeDtypeStruct((2,), jnp.uint32))
  return checkpointing.abstract_like(tree, parallel.replicated(mesh))


@dataclasses.dataclass(frozen=True)
class Run:
  """A restored run: everything a mode needs to use a checkpoint's EMA network.

  Attributes:
    config: the mode's config.
    sde: `sde_lib.get_sde(config)`'s SDE; eps its sampling end time.
    model: the network (`models.create_model(config)`).
    mesh: the one 'data' mesh (`parallel.make_mesh`).
    data_shape: per-example shape, e.g. (H, W, C) or (D,).
    ema_params: the checkpoint's EMA params, replicated on the mesh.
    step: the checkpoint's training step.
    workdir: where it was restored from (None for `fresh_run`).
  """
  config: ml_collections.ConfigDict
  sde: sde_lib.SDE
  eps: float
  model: Any
  mesh: Mesh
  data_shape: tuple[int, ...]
  ema_params: Params
  step: int
  workdir: str | None = None

  def score_fn_of(self, params: Params) -> sde_lib.ScoreFn:
    """score_fn(x [B, ...], t [B]) of `params`: inside jit, pass the traced params."""
    return mutils.score_fn_from_config(self.config, self.sde, self.model, params)

  @property
  def score_fn(self) -> sde_lib.ScoreFn:
    """The EMA network's score_fn(x [B, ...], t [B]) -> [B, ...]."""
    return self.score_fn_of(self.ema_params)

  @property
  def replicated(self) -> NamedSharding:
    return parallel.replicated(self.mesh)

  @property
  def batch_sharding(self) -> NamedSharding:
    return parallel.data_sharding(self.mesh)


def restore_run(config: ml_collections.ConfigDict, workdir: str, *, step: int | None = None,
                shape: tuple[int, ...] | None = None, mesh: Mesh | None = None) -> Run:
  """Restores the EMA params of `workdir`'s newest readable checkpoint (or of `step`).

  Args:
    config: the config of the run's architecture (model.*, training.sde, data.*).
    workdir: the run directory holding checkpoints/.
    step: a checkpointed step to restore instead of the newest.
    shape: per-example data shape; default `data_shape(config)`.
    mesh: default `parallel.make_mesh()`.

  Returns:
    The Run.

  Raises:
    ConfigError: `workdir` is an import whose required model options `config` lacks.
    CheckpointError: no (readable) checkpoint in workdir, or one of another shape.
  """
  checkpointing.check_import_record(config, workdir)
  sde, eps = sde_lib.get_sde(config)
  model = create_model(config)
  mesh = mesh if mesh is not None else parallel.make_mesh()
  shape = tuple(shape) if shape is not None else data_shape(config)
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  try:
    state = ckpt.restore(abstract_state(config, model, shape, mesh), step=step)
  finally:
    ckpt.close()
  return Run(config=config, sde=sde, eps=eps, model=model, mesh=mesh, data_shape=shape,
             ema_params=state.ema_params, step=int(state.step), workdir=workdir)


def fresh_run(config: ml_collections.ConfigDict, *, shape: tuple[int, ...] | None = None,
              mesh: Mesh | None = None) -> Run:
  """A Run with freshly initialised (step 0) params, for benchmarks that need no checkpoint."""
  sde, eps = sde_lib.get_sde(config)
  model = create_model(config)
  mesh = mesh if mesh is not None else parallel.make_mesh()
  shape = tuple(shape) if shape is not None else data_shape(config)
  init = init_fn(config, model, optim.get_optimizer(config), shape)
  state = jax.jit(init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(config.seed))
  return Run(config=config, sde=sde, eps=eps, model=model, mesh=mesh, data_shape=shape,
             ema_params=state.ema_params, step=0)
