"""The noise ladder and the noise-level classifier q(k | x) of Denoising MCMC.

The chain lives on (x_hat, k): x_hat is the VE view of the state (x_t / alpha(t),
see sde_lib.SDE.alpha) and k indexes a fixed ladder sigma_0 < ... < sigma_{L-1}.
The target joint is p(x_hat, k) = p_{sigma_k}(x_hat) / L with
p_sigma = p_data * N(0, sigma^2 I), so the exact conditional of k is
q(k | x_hat) = p_{sigma_k}(x_hat) / sum_j p_{sigma_j}(x_hat) (Kim & Ye 2023, Sec. 3).

Training draws k ~ U{0..L-1}, x_hat = x0 + sigma_k z and minimises the
cross-entropy of k: its minimiser is exactly that conditional. The VE view makes
the classifier independent of the SDE: a VP or sub-VP model's x_t = alpha(t) x_hat
with sigma_k = ve_sigma(t), so one classifier trained on x0 + sigma_k z serves VE,
VP and sub-VP score models alike; only the score call maps x_hat back to x_t
(dlg.ve_score_fn).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

import sde_lib
import train_state
from errors import ConfigError
from models import utils as mutils
from sde_lib import bcast

Array = jax.Array
LogitsFn = Callable[[Array], Array]   # x_hat [B, ...] -> logits [B, L]


def ladder(n_levels: int, sigma_min: float, sigma_max: float) -> Array:
  """Geometric noise levels sigma_0 = sigma_min < ... < sigma_{L-1} = sigma_max: [L]."""
  if n_levels < 2 or not 0 < sigma_min < sigma_max:
    raise ConfigError(f'dmcmc ladder needs n_levels >= 2 and 0 < sigma_min < sigma_max; got '
                      f'n_levels={n_levels}, sigma_min={sigma_min}, sigma_max={sigma_max}')
  return sde_lib.geometric_sigmas(sigma_min, sigma_max, n_levels)


def ladder_from_config(config) -> Array:
  d = config.dmcmc
  return ladder(d.n_levels, d.sigma_min, d.sigma_max)


def check_ladder(sde: sde_lib.SDE, sigmas: Array) -> None:
  """The ladder must lie inside the VE-view range [ve_sigma(0), ve_sigma(T)] of the model."""
  lo = float(sde.ve_sigma(jnp.zeros(())))
  hi = float(sde.ve_sigma(jnp.asarray(sde.T)))
  smin, smax = float(sigmas[0]), float(sigmas[-1])
  if smin < lo * (1. - 1e-4) or smax > hi * (1. + 1e-4):
    raise ConfigError(f'dmcmc.sigma_min={smin:g}, dmcmc.sigma_max={smax:g} leave the score '
                      f"model's VE-view range [{lo:g}, {hi:g}] ({type(sde).__name__}); "
                      'set them inside it')


def classifier_loss(logits_fn: LogitsFn, key: Array, x0: Array, sigmas: Array) -> Array:
  """Cross-entropy of the level index for x_hat = x0 + sigma_k z, k ~ U{0..L-1}.

  Args:
    logits_fn: x_hat [B, ...] -> logits [B, L].
    x0: clean data [B, ...].
    sigmas: the ladder [L].
  Returns:
    The batch-mean cross-entropy (scalar, nats).
  """
  k_key, z_key = jax.random.split(key)
  k = jax.random.randint(k_key, (x0.shape[0],), 0, sigmas.shape[0])
  x = x0 + bcast(sigmas[k], x0) * jax.random.normal(z_key, x0.shape)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), k))


def get_classifier_loss(config) -> Callable[[LogitsFn, Array, Array], Array]:
  """loss(logits_fn, key, x0) -> scalar with the ladder of `config.dmcmc`.

  `loss_fn_from_config` binds it to the network for training.objective='noise_classifier'.
  """
  sigmas = ladder_from_config(config)
  return lambda logits_fn, key, x0: classifier_loss(logits_fn, key, x0, sigmas)


def loss_fn_from_config(config, sde: sde_lib.SDE, model, *,
                        train: bool = True) -> train_state.LossFn:
  """training.objective='noise_classifier' for the shared train step (`objectives.py`).

  The network is label-free: it sees x_hat and a zero label, and returns logits [B, L].

  Returns:
    loss_fn(params, key, x0 [B, ...]) -> scalar.
  """
  del sde   # the VE view makes the classifier independent of the SDE (module docstring)

  def network_fn(params, *, train, rng):
    model_fn = mutils.get_model_fn(model, params, train=train, rng=rng)
    return lambda x: model_fn(x, jnp.zeros((x.shape[0],)))

  return train_state.network_loss(get_classifier_loss(config), network_fn, train=train,
                                  parts=config.training.get('network_parts', 0))


def logits_fn_from_model(model, params) -> LogitsFn:
  """Binds classifier params: x_hat [B, ...] -> logits [B, L] (eval mode)."""
  return lambda x: model.apply({'params': params}, x, jnp.zeros((x.shape[0],)), train=False)
