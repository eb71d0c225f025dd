"""The one place where a network output becomes a score.

A network is a bare function of (x, noise label). `get_score_fn` owns the
parameterisation of Song et al. 2021 (score_sde), with score_sde's labels, so
that its published checkpoints and ours are interchangeable:

| SDE         | time label fed to the net                | score from the output `out`         |
|-------------|------------------------------------------|-------------------------------------|
| VE, cont.   | log sigma(t)                             | out (/ sigma(t) if scale_by_sigma)   |
| VE, disc.   | j = round((1 - t)(N - 1)), 0 = sigma_max | out (/ sigma_max-first sigmas[j] if scale_by_sigma) |
| VP, cont.   | 999 t                                    | -out / std(t)   (out predicts eps)   |
| VP, disc.   | (N - 1) t, a float, not rounded          | -out / sqrt(1 - alphabar_i), i = int((N - 1) t) |
| sub-VP      | 999 t (continuous only)                  | -out / std(t)                        |

`model.label_convention='legacy'` keeps the labels this project used before
(discrete VE and VP both fed sde.timestep(t), 0 = least noise) for
checkpoints trained with them; see docs/models.md.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

import sde_lib
from errors import ConfigError, lookup
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


LABEL_CONVENTIONS = ('score_sde', 'legacy')


def _check_convention(label_convention: str) -> None:
  if label_convention not in LABEL_CONVENTIONS:
    raise ConfigError(f'model.label_convention={label_convention!r} is unknown; valid: '
                      f'{", ".join(LABEL_CONVENTIONS)}')


def _ve_level(sde: sde_lib.SDE, t: Array) -> Array:
  """score_sde's VE-discrete label round((T - t) / T (N - 1)): 0 = sigma_max, [B] int32.

  Rounding, not flooring, is robust to float error either side of a level's time
  (sampler grids and the SMLD loss put t within an ulp of i / (N - 1)).
  """
  return jnp.round((sde.T - t) / sde.T * (sde.N - 1)).astype(jnp.int32)


# The parameterisation of each SDE family (the table above), keyed by `sde.name`. The
# labels and output scales are network conventions; the sigmas and stds they use come
# from the SDE (`marginal_std`, `discrete_std`, `timestep`).

def _ve_labels(sde, t, continuous, legacy):
  if continuous:
    return jnp.log(sde.sigma(t))
  return (sde.timestep(t) if legacy else _ve_level(sde, t)).astype(jnp.float32)


def _ve_scale(sde, t, continuous, scale_by_sigma, legacy):
  """VE networks predict the score, optionally divided by sigma (NCSNv2's technique 3)."""
  if not scale_by_sigma:
    return jnp.ones_like(t)
  if continuous:
    sigma = sde.sigma(t)
  elif legacy:
    sigma = sde.discrete_std(sde.timestep(t))
  else:   # the ladder is ascending: the sigma_max-first label j is level N - 1 - j
    sigma = sde.discrete_std(sde.N - 1 - _ve_level(sde, t))
  return 1. / sigma


def _eps_labels(sde, t, continuous, legacy):
  if continuous or sde.discrete_scheme is None:   # sub-VP: continuous only
    return t * 999.
  return sde.timestep(t).astype(jnp.float32) if legacy else t * (sde.N - 1) / sde.T


def _eps_scale(sde, t, continuous, scale_by_sigma, legacy):
  """VP / sub-VP networks predict the noise eps: score = -eps / std (Ho et al. 2020, Eq. 11)."""
  del legacy
  if scale_by_sigma:
    raise ConfigError('model.scale_by_sigma=True only applies to VE SDEs; set it to False '
                      'for VP/sub-VP (their networks predict the noise, already divided by std)')
  if continuous or sde.discrete_scheme is None:
    std = sde.marginal_std(t)
  else:   # int((N - 1) t), as score_sde (timestep adds only float-error slack)
    std = sde.discrete_std(sde.timestep(t))
  return -1. / std


# sde.name -> (labels(sde, t, continuous, legacy),
#              scale(sde, t, continuous, scale_by_sigma, legacy))
PARAMETERISATIONS = {
    'vesde': (_ve_labels, _ve_scale),
    'vpsde': (_eps_labels, _eps_scale),
    'subvpsde': (_eps_labels, _eps_scale),
}


def noise_labels(sde: sde_lib.SDE, t: Array, continuous: bool,
                 label_convention: str = 'score_sde') -> Array:
  """The conditioning label the network sees at time t: [B] float (table above)."""
  _check_convention(label_convention)
  labels, _ = lookup(PARAMETERISATIONS, sde.name, 'training.sde')
  return labels(sde, t, continuous, label_convention == 'legacy')


def output_scale(sde: sde_lib.SDE, t: Array, continuous: bool, scale_by_sigma: bool,
                 label_convention: str = 'score_sde') -> Array:
  """c(t) with score = out * c(t): [B].

  VP and sub-VP networks predict the noise eps, so score = -eps / std (Ho et al.
  2020, Eq. 11; score_sde). VE networks predict the score itself, optionally
  divided by sigma (NCSNv2's technique 3, "scale_by_sigma"); discrete, the sigma
  is the one of the label (score_sde's networks divide by `sigmas[label]`,
  sigma_max first).
  """
  _check_convention(label_convention)
  _, scale = lookup(PARAMETERISATIONS, sde.name, 'training.sde')
  return scale(sde, t, continuous, scale_by_sigma, label_convention == 'legacy')


def get_model_fn(model: nn.Module, params: Any, train: bool = False,
                 rng: Array | None = None) -> Callable[[Array, Array], Array]:
  """Binds parameters (and the dropout rng when training) to a network."""

  def model_fn(x, labels):
    rngs = {'dropout': rng} if (train and rng is not None) else None
    return model.apply({'params': params}, x, labels, train=train, rngs=rngs)

  return model_fn


def get_score_fn(sde: sde_lib.SDE, model: nn.Module, params: Any, *, train: bool = False,
                 continuous: bool = True, scale_by_sigma: bool = False,
                 rng: Array | None = None,
                 label_convention: str = 'score_sde') -> sde_lib.ScoreFn:
  """Turns a network and its parameters into `score_fn(x [B, ...], t [B]) -> [B, ...]`.

  label_convention: 'score_sde' (default) or 'legacy' (see the module docstring).
  """
  if not continuous and sde.discrete_scheme is None:
    raise ConfigError(f'training.continuous=False has no discrete scheme for {sde.name}; '
                      'use training.continuous=True')
  model_fn = get_model_fn(model, params, train=train, rng=rng)

  def score_fn(x, t):
    out = model_fn(x, noise_labels(sde, t, continuous, label_convention))
    return out * bcast(output_scale(sde, t, continuous, scale_by_sigma, label_convention), out)

  return score_fn


def score_fn_from_config(config, sde: sde_lib.SDE, model: nn.Module, params: Any, *,
                         train: bool = False, rng: Array | None = None) -> sde_lib.ScoreFn:
  """`get_score_fn` with the continuous / scale_by_sigma / label_convention read from config."""
  return get_score_fn(sde, model, params, train=train, rng=rng,
                      continuous=config.training.continuous,
                      scale_by_sigma=config.model.scale_by_sigma,
                      label_convention=config.model.get('label_convention', 'score_sde'))
