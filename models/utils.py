"""The one place where a network output becomes a score.

A network is a bare function of (x, noise label). `get_score_fn` owns the
parameterisation of Song et al. 2021 (score_sde):

| SDE         | time label fed to the net     | score from the output `out`       |
|-------------|-------------------------------|-----------------------------------|
| VE, cont.   | log sigma(t)                  | out (/ sigma(t) if scale_by_sigma) |
| VE, disc.   | index i of sigma_i (0 = least)| out (/ sigma_i if scale_by_sigma)  |
| VP, cont.   | 999 t                         | -out / std(t)   (out predicts eps) |
| VP, disc.   | index i = t (N - 1)           | -out / sqrt(1 - alphabar_i)        |
| sub-VP      | 999 t (continuous only)       | -out / std(t)                      |
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

import sde_lib
from errors import ConfigError
from sde_lib import bcast

Array = jax.Array


def check_parameterisation(config) -> None:
  """Rejects, at model build time, a config whose output scaling cannot apply.

  Raises:
    ConfigError: model.scale_by_sigma with a VP/sub-VP SDE, whose networks
      predict the noise (already divided by std, see `output_scale`).
  """
  if config.model.scale_by_sigma and config.training.sde.lower() != 'vesde':
    raise ConfigError(f'model.scale_by_sigma=True only applies to VE SDEs, not '
                      f'training.sde={config.training.sde!r}; set model.scale_by_sigma=False')


def noise_labels(sde: sde_lib.SDE, t: Array, continuous: bool) -> Array:
  """The conditioning label the network sees at time t: [B] float."""
  if isinstance(sde, sde_lib.VESDE):
    return jnp.log(sde.sigma(t)) if continuous else sde.timestep(t).astype(jnp.float32)
  if continuous or isinstance(sde, sde_lib.subVPSDE):
    return t * 999.
  return sde.timestep(t).astype(jnp.float32)


def output_scale(sde: sde_lib.SDE, t: Array, continuous: bool, scale_by_sigma: bool) -> Array:
  """c(t) with score = out * c(t): [B].

  VP and sub-VP networks predict the noise eps, so score = -eps / std (Ho et al.
  2020, Eq. 11; score_sde). VE networks predict the score itself, optionally
  divided by sigma (NCSNv2's technique 3, "scale_by_sigma").
  """
  if isinstance(sde, sde_lib.VESDE):
    if not scale_by_sigma:
      return jnp.ones_like(t)
    sigma = sde.sigma(t) if continuous else sde.discrete_sigmas[sde.timestep(t)]
    return 1. / sigma
  if scale_by_sigma:
    raise ConfigError('model.scale_by_sigma=True only applies to VE SDEs; set it to False '
                      'for VP/sub-VP (their networks predict the noise, already divided by std)')
  if continuous or isinstance(sde, sde_lib.subVPSDE):
    std = sde.marginal_std(t)
  else:
    std = jnp.sqrt(1. - sde.alphas_cumprod[sde.timestep(t)])
  return -1. / std


def get_model_fn(model: nn.Module, params: Any, train: bool = False,
                 rng: Array | None = None) -> Callable[[Array, Array], Array]:
  """Binds parameters (and the dropout rng when training) to a network."""

  def model_fn(x, labels):
    rngs = {'dropout': rng} if (train and rng is not None) else None
    return model.apply({'params': params}, x, labels, train=train, rngs=rngs)

  return model_fn


def get_score_fn(sde: sde_lib.SDE, model: nn.Module, params: Any, *, train: bool = False,
                 continuous: bool = True, scale_by_sigma: bool = False,
                 rng: Array | None = None) -> sde_lib.ScoreFn:
  """Turns a network and its parameters into `score_fn(x [B, ...], t [B]) -> [B, ...]`."""
  if not continuous and isinstance(sde, sde_lib.subVPSDE):
    raise ConfigError('training.continuous=False has no discrete scheme for subvpsde; '
                      'use training.continuous=True')
  model_fn = get_model_fn(model, params, train=train, rng=rng)

  def score_fn(x, t):
    out = model_fn(x, noise_labels(sde, t, continuous))
    return out * bcast(output_scale(sde, t, continuous, scale_by_sigma), out)

  return score_fn


def score_fn_from_config(config, sde: sde_lib.SDE, model: nn.Module, params: Any, *,
                         train: bool = False, rng: Array | None = None) -> sde_lib.ScoreFn:
  """`get_score_fn` with the continuous / scale_by_sigma flags read from config."""
  return get_score_fn(sde, model, params, train=train, rng=rng,
                      continuous=config.training.continuous,
                      scale_by_sigma=config.model.scale_by_sigma)
