"""The train state, its EMA and the one train step that every objective shares.

The step knows nothing of scores, classifiers or bridges: it takes a
`loss_fn(params, key, batch) -> scalar` and does value_and_grad, the optimizer
update (`optax.apply_updates`) and the EMA, with the per-step key
fold_in(state.rng, state.step) (big_vision style). Score DSM (`losses`), DMCMC's
noise-level classifier (`dmcmc.classifier`), the guidance time classifier
(`guidance`) and DSB's mean matching (`dsb.ipf`) each pass their own loss;
`objectives.py` picks the loss of a `--mode train` config.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

Array = jax.Array
# loss_fn(params, key, batch) -> scalar; `batch` is any pytree (x, or (x, labels), or a cache).
LossFn = Callable[[Any, Array, Any], Array]
# network_fn(params, *, train, rng) -> what the loss evaluates (a score_fn, logits, a mean_fn).
NetworkFn = Callable[..., Any]


@flax.struct.dataclass
class TrainState:
  step: Array           # int32 scalar
  params: Any
  ema_params: Any
  opt_state: Any
  rng: Array            # base key; step k uses fold_in(rng, k)


def ema_update(ema_params: Any, params: Any, step: Array, ema_rate: float,
               ema_warmup: bool) -> Any:
  """The EMA after optimisation step `step` (0-based): rate * ema + (1 - rate) * params."""
  rate = ema_rate
  if ema_warmup:  # the EMA starts at the random init: let it forget that quickly
    n = jnp.asarray(step).astype(jnp.float32)
    rate = jnp.minimum(ema_rate, (1. + n) / (10. + n))
  return jax.tree.map(lambda e, p: rate * e + (1. - rate) * p, ema_params, params)


def network_loss(loss: Callable[[Any, Array, Any], Array], network_fn: NetworkFn, *,
                 train: bool) -> LossFn:
  """Turns a loss of a network, loss(net, key, batch), into loss_fn(params, key, batch).

  In training the step's key is split once into (loss key, dropout key), so the loss's
  own draws (t, z, minibatch) and the dropout masks are independent; in evaluation the
  network runs without dropout and the loss gets the whole key.

  Args:
    loss: loss(net, key, batch) -> scalar, `net` being what network_fn returns.
    network_fn: network_fn(params, train=..., rng=...) -> net.
    train: dropout on (training) or off (evaluation).
  """
  if not train:
    return lambda params, key, batch: loss(network_fn(params, train=False, rng=None), key, batch)

  def loss_fn(params, key, batch):
    loss_key, dropout_key = jax.random.split(key)
    return loss(network_fn(params, train=True, rng=dropout_key), loss_key, batch)

  return loss_fn


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    ema_rate: float, ema_warmup: bool
                    ) -> Callable[[TrainState, Any], tuple[TrainState, Array]]:
  """One optimisation step with EMA; pure, so it can be jitted and scanned.

  Args:
    loss_fn: loss_fn(params, key, batch) -> scalar; key = fold_in(state.rng, state.step).
    optimizer: the optax transformation whose state is `state.opt_state`.
    ema_rate, ema_warmup: see `ema_update` (config.model.ema_rate / ema_warmup).

  Returns:
    step_fn(state, batch) -> (state, loss), `batch` passed to loss_fn unchanged.
  """

  def step_fn(state: TrainState, batch: Any):
    key = jax.random.fold_in(state.rng, state.step)
    value, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema_params, params, state.step, ema_rate, ema_warmup)
    return state.replace(step=state.step + 1, params=params, ema_params=ema,
                         opt_state=opt_state), value

  return step_fn


def get_multi_step(step_fn, unroll: bool | None = None
                   ) -> Callable[[TrainState, Any], tuple[TrainState, Array]]:
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
