"""Denoising score-matching losses, the optimizer and the train step.

Every loss takes any `score_fn(x, t)`, so an exact score can be plugged in to
check the analytic minimum. The continuous and the discrete loss reduce to the same
residual score * std + z, weighted per sample (Song et al. 2021, Eq. 7; App. C).
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

import sde_lib
from errors import ConfigError, lookup
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
                        likelihood_weighting: bool = False) -> Array:
  """Eq. 7 with t ~ U(eps, T).

  lambda(t) = std(t)^2 by default, giving |score * std + z|^2; with
  likelihood_weighting, lambda(t) = g(t)^2 (Song et al. 2021b, Thm. 1), giving
  |score + z / std|^2 g^2.

  Args:
    x0: clean data [B, ...].
  Returns:
    The batch-mean loss (scalar).
  """
  t_key, z_key = jax.random.split(key)
  t = jax.random.uniform(t_key, (x0.shape[0],), minval=eps, maxval=sde.T)
  z = jax.random.normal(z_key, x0.shape)
  mean, std = sde.marginal_prob(x0, t)
  score = score_fn(mean + bcast(std, z) * z, t)
  if likelihood_weighting:
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


def network_fn_from_config(config, sde, model, params, *, train=False, rng=None):
  """What a loss sees of the network: the score_fn, or for training.objective=
  'noise_classifier' the bare logits function x -> [B, n_levels] (not a score), or for
  'time_classifier' the class logits (x, t) -> [B, K]."""
  objective = config.training.get('objective', 'score')
  if objective == 'noise_classifier':
    model_fn = mutils.get_model_fn(model, params, train=train, rng=rng)
    return lambda x: model_fn(x, jnp.zeros((x.shape[0],)))
  if objective == 'time_classifier':   # (x, t) -> logits [B, K] (guidance.py)
    import guidance                      # lazy: score training never imports it
    return guidance.logits_fn(sde, model, params, train=train, rng=rng)
  return mutils.score_fn_from_config(config, sde, model, params, train=train, rng=rng)


def get_loss(config: ml_collections.ConfigDict, sde: sde_lib.SDE) -> Callable[..., Array]:
  """Picks the loss for (training.continuous, SDE) and binds config options.

  Returns:
    loss(score_fn, key, x0) -> scalar.
  """
  t = config.training
  objective = t.get('objective', 'score')
  if objective == 'noise_classifier':   # DMCMC's classifier: loss(logits_fn, key, x0)
    from dmcmc import classifier           # lazy: score training never imports dmcmc
    return classifier.get_classifier_loss(config)
  if objective == 'time_classifier':    # p_t(y | x): loss(logits_fn, key, (x0, y))
    import guidance
    return guidance.get_classifier_loss(config, sde)
  if objective != 'score':
    raise ConfigError(f'training.objective={objective!r} is unknown; valid: noise_classifier, '
                      'score, time_classifier')
  if t.continuous:
    return lambda score_fn, key, x0: continuous_dsm_loss(
        score_fn, sde, key, x0, eps=t.eps, reduce_mean=t.reduce_mean,
        likelihood_weighting=t.likelihood_weighting)
  if t.likelihood_weighting:
    raise ConfigError('training.likelihood_weighting=True needs training.continuous=True')
  if sde.discrete_scheme is None:
    raise ConfigError(f'training.continuous=False: no discrete loss for {type(sde).__name__}; '
                      'use training.continuous=True')
  return lambda score_fn, key, x0: discrete_dsm_loss(score_fn, sde, key, x0,
                                                     reduce_mean=t.reduce_mean)


# ----------------------------------------------------------------------------- optimizer

OPTIMIZERS = {'adam': optax.adamw}


def get_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up and global-norm clipping (score_sde's `optimization_manager`)."""
  o = config.optim
  make = lookup(OPTIMIZERS, o.optimizer.lower(), 'optim.optimizer')
  if o.warmup > 0:
    # Step k (counting from 0) uses lr (k + 1) / warmup, so the first step is not wasted
    # at lr = 0 (score_sde's schedule gives step 0 a zero learning rate).
    lr = lambda count: o.lr * jnp.minimum((count + 1.) / o.warmup, 1.)
  else:
    lr = o.lr
  tx = make(learning_rate=lr, b1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
  if o.grad_clip >= 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


# ----------------------------------------------------------------------------- precision

PRECISIONS = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Modules that keep float32 inputs under bfloat16 compute: the Fourier features of a
# log-sigma label multiply it by frequencies ~ N(0, 16^2) before sin / cos, so bfloat16's
# 8-bit mantissa would scramble their phases.
_FLOAT32_MODULES = ('GaussianFourierProjection',)


class MixedPrecisionModel:
  """A network whose `apply` computes in `dtype` while its params stay float32.

  Every float32 parameter is cast to `dtype` on the way in (so the gradient comes back
  float32, through the cast), the image input too, and a Flax method interceptor casts
  the floating inputs of every submodule call (the noise-label embedding included),
  so that each convolution, matmul and activation runs in `dtype`. The root's noise
  labels stay float32 and the output is cast back to float32, so the loss, the gradient
  and the optimizer state are float32. GroupNorm's statistics are float32 (Flax reduces
  in float32 by default). Used for the train step when training.precision='bfloat16'.
  """

  def __init__(self, model: nn.Module, dtype):
    self.model, self.dtype = model, dtype

  def _cast(self, tree):
    return jax.tree.map(lambda a: a.astype(self.dtype) if isinstance(a, jax.Array) and
                        a.dtype == jnp.float32 else a, tree)

  def _interceptor(self, next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name == '__call__' and module.scope is not None and module.scope.path
        and type(module).__name__ not in _FLOAT32_MODULES):
      args, kwargs = self._cast(args), self._cast(kwargs)
    return next_fun(*args, **kwargs)

  def apply(self, variables, x, *args, **kwargs):
    with nn.intercept_methods(self._interceptor):
      out = self.model.apply(self._cast(variables), x.astype(self.dtype), *args, **kwargs)
    return jax.tree.map(lambda a: a.astype(jnp.float32) if a.dtype == self.dtype else a, out)


def compute_model(config: ml_collections.ConfigDict, model: nn.Module):
  """`model`, or its MixedPrecisionModel for training.precision='bfloat16'."""
  precision = config.training.get('precision', 'float32')
  dtype = lookup(PRECISIONS, precision, 'training.precision')
  return model if dtype == jnp.float32 else MixedPrecisionModel(model, dtype)


# ----------------------------------------------------------------------------- train step

def ema_update(ema_params: Any, params: Any, step: Array, ema_rate: float,
               ema_warmup: bool) -> Any:
  """The EMA after optimisation step `step` (0-based): rate * ema + (1 - rate) * params."""
  rate = ema_rate
  if ema_warmup:  # the EMA starts at the random init: let it forget that quickly
    n = jnp.asarray(step).astype(jnp.float32)
    rate = jnp.minimum(ema_rate, (1. + n) / (10. + n))
  return jax.tree.map(lambda e, p: rate * e + (1. - rate) * p, ema_params, params)


@flax.struct.dataclass
class TrainState:
  step: Array           # int32 scalar
  params: Any
  ema_params: Any
  opt_state: Any
  rng: Array            # base key; step k uses fold_in(rng, k)


def get_train_step(config: ml_collections.ConfigDict, sde: sde_lib.SDE, model: nn.Module,
                   optimizer: optax.GradientTransformation) -> Callable[[TrainState, Array],
                                                                       tuple[TrainState, Array]]:
  """One optimisation step on a global batch, with EMA; pure, so it can be scanned.

  With training.precision='bfloat16' the network computes in bfloat16 (see
  MixedPrecisionModel); params, EMA, optimizer state, loss and gradients stay float32.

  Returns:
    step_fn(state, batch [B, ...]) -> (state, loss).
  """
  loss = get_loss(config, sde)
  ema_rate = config.model.ema_rate
  ema_warmup = config.model.ema_warmup
  net = compute_model(config, model)   # training.precision: float32, or bfloat16 compute

  def loss_fn(params, key, batch):
    loss_key, dropout_key = jax.random.split(key)
    score_fn = network_fn_from_config(config, sde, net, params, train=True, rng=dropout_key)
    return loss(score_fn, loss_key, batch)

  def step_fn(state: TrainState, batch: Array):
    key = jax.random.fold_in(state.rng, state.step)
    value, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema_params, params, state.step, ema_rate, ema_warmup)
    return state.replace(step=state.step + 1, params=params, ema_params=ema,
                         opt_state=opt_state), value

  return step_fn


def get_multi_step(step_fn, unroll: bool | None = None
                   ) -> Callable[[TrainState, Array], tuple[TrainState, Array]]:
  """Fuses n steps into one call (score_sde's n_jitted_steps).

  On accelerators this is a `lax.scan`. On XLA:CPU a convolution's gradient inside
  a while loop runs about 20x slower than outside one (jax-ml/jax#12868; measured
  here 0.27 vs 0.05 s per digits step), so there the n steps are unrolled at trace
  time instead, at the price of compile time growing with n.

  Returns:
    multi_step(state, batches [n, B, ...]) -> (state, losses [n]).
  """
  if unroll is None:
    unroll = jax.default_backend() == 'cpu'
  if not unroll:
    return lambda state, batches: jax.lax.scan(step_fn, state, batches)

  def multi_step(state, batches):   # batches: an array, or (x, labels) for a classifier
    values = []
    for i in range(jax.tree.leaves(batches)[0].shape[0]):
      state, value = step_fn(state, jax.tree.map(lambda b: b[i], batches))
      values.append(value)
    return state, jnp.stack(values)

  return multi_step


def get_eval_loss(config, sde, model) -> Callable[[Any, Array, Array], Array]:
  """eval_loss(params, key, batch) -> scalar, with the network in eval mode."""
  loss = get_loss(config, sde)

  def eval_loss(params, key, batch):
    return loss(network_fn_from_config(config, sde, model, params), key, batch)

  return eval_loss
