"""Denoising score-matching losses: the score objective of the shared train step.

Every loss takes any `score_fn(x, t)`, so an exact score can be plugged in to
check the analytic minimum. The continuous and the discrete loss reduce to the same
residual score * std + z, weighted per sample (Song et al. 2021, Eq. 7; App. C).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

import sde_lib
import train_state
from errors import ConfigError
from models import utils as mutils
from sde_lib import bcast

Array = jax.Array


def _reduce(residual: Array, reduce_mean: bool) -> Array:
  """Per-sample reduction over non-batch dims.

  score_sde's convention: mean over dimensions, or half the sum (the 1/2 of the
  Fisher divergence); kept so that loss values are comparable with the paper's code.
  """
  flat = residual.reshape(residual.shape[0], -1)
  return jnp.mean(flat, axis=-1) if reduce_mean else 0.5 * jnp.sum(flat, axis=-1)


def continuous_dsm_loss(score_fn: sde_lib.ScoreFn, sde: sde_lib.SDE, key: Array, x0: Array, *,
                        eps: float = 1e-5, reduce_mean: bool = False,
                        likelihood_weighting: bool = False,
                        importance_sampling: bool = False) -> Array:
  """Eq. 7 with t ~ U(eps, T).

  lambda(t) = std(t)^2 by default, giving |score * std + z|^2; with
  likelihood_weighting, lambda(t) = g(t)^2 (Song et al. 2021b, Thm. 1), giving
  |score + z / std|^2 g^2. With importance_sampling as well, t ~ p(t) = (g^2/std^2) / M
  (`sde.lw_sample_t`; Song et al. 2021b, Sec. 5) and the per-sample loss is
  |score * std + z|^2 M / (T - eps): the same expectation as the uniform-t weighted loss
  (E_p[(g^2 / p) l] / (T - eps) = E_U[g^2 l]), without its 1/t-heavy weights.

  Args:
    x0: clean data [B, ...].
  Returns:
    The batch-mean loss (scalar).
  """
  t_key, z_key = jax.random.split(key)
  if importance_sampling:
    if not likelihood_weighting:
      raise ValueError('importance_sampling samples t for lambda = g^2: it needs '
                       'likelihood_weighting')
    t = sde.lw_sample_t(t_key, x0.shape[0], eps)
  else:
    t = jax.random.uniform(t_key, (x0.shape[0],), minval=eps, maxval=sde.T)
  z = jax.random.normal(z_key, x0.shape)
  mean, std = sde.marginal_prob(x0, t)
  score = score_fn(mean + bcast(std, z) * z, t)
  if importance_sampling:
    losses = (_reduce(jnp.square(score * bcast(std, z) + z), reduce_mean)
              * (sde.lw_mass(eps) / (sde.T - eps)))
  elif likelihood_weighting:
    g2 = sde.sde(jnp.zeros_like(x0), t)[1] ** 2
    losses = _reduce(jnp.square(score + z / bcast(std, z)), reduce_mean) * g2
  else:
    losses = _reduce(jnp.square(score * bcast(std, z) + z), reduce_mean)
  return jnp.mean(losses)


def discrete_dsm_loss(score_fn: sde_lib.ScoreFn, sde: sde_lib.SDE, key: Array, x0: Array, *,
                      reduce_mean: bool) -> Array:
  """Denoising score matching on the SDE's own N-level chain, |score * std_i + z|^2.

  The level i ~ U{0..N-1}, x_i = mean_i + std_i z from `sde.discrete_marginal`, scored at
  t_i = `sde.level_time(i)` (so `sde.timestep(t_i) == i` and a discrete score_fn sees
  label i). VE: NCSN's loss sigma_i^2 |score + z / sigma_i|^2 (Song & Ermon 2019,
  Eq. 5-6). VP: DDPM's simple loss |eps_theta - eps|^2 (Ho et al. 2020, Eq. 14) with
  eps_theta = -score sqrt(1 - alphabar_i). score_sde reduces the first with
  reduce_mean=False and the second with True; configs set it (training.reduce_mean).
  """
  i_key, z_key = jax.random.split(key)
  i = jax.random.randint(i_key, (x0.shape[0],), 0, sde.N)
  mean, std = sde.discrete_marginal(x0, i)
  z = jax.random.normal(z_key, x0.shape)
  score = score_fn(mean + bcast(std, z) * z, sde.level_time(i))
  return jnp.mean(_reduce(jnp.square(score * bcast(std, z) + z), reduce_mean))


def get_loss(config: ml_collections.ConfigDict, sde: sde_lib.SDE) -> Callable[..., Array]:
  """Picks the loss for (training.continuous, SDE) and binds config options.

  Returns:
    loss(score_fn, key, x0) -> scalar.
  """
  t = config.training
  if t.get('importance_sampling', False) and not t.likelihood_weighting:
    raise ConfigError('training.importance_sampling=True needs training.likelihood_weighting=True '
                      '(it samples t for the weighting lambda = g^2)')
  if t.continuous:
    return lambda score_fn, key, x0: continuous_dsm_loss(
        score_fn, sde, key, x0, eps=t.eps, reduce_mean=t.reduce_mean,
        likelihood_weighting=t.likelihood_weighting,
        importance_sampling=t.get('importance_sampling', False))
  for field in ('likelihood_weighting', 'importance_sampling'):
    if t.get(field, False):
      raise ConfigError(f'training.{field}=True needs training.continuous=True')
  if sde.discrete_scheme is None:
    raise ConfigError(f'training.continuous=False: no discrete loss for {type(sde).__name__}; '
                      'use training.continuous=True')
  return lambda score_fn, key, x0: discrete_dsm_loss(score_fn, sde, key, x0,
                                                     reduce_mean=t.reduce_mean)


def loss_fn_from_config(config: ml_collections.ConfigDict, sde: sde_lib.SDE, model, *,
                        train: bool = True) -> train_state.LossFn:
  """The score objective (training.objective='score') for the shared train step.

  Args:
    model: the network (in training, `precision.compute_model` of it).
    train: dropout on and the step's key split into loss and dropout keys, or evaluation.
  Returns:
    loss_fn(params, key, x0 [B, ...]) -> scalar.
  """
  return train_state.network_loss(
      get_loss(config, sde),
      lambda params, **kw: mutils.score_fn_from_config(config, sde, model, params, **kw),
      train=train, parts=config.training.get('network_parts', 0))
