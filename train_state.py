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

from errors import ConfigError

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


# Input values per part when the train step splits the network's batch on XLA:CPU by
# itself (training.network_parts = 0): 16 images of 32x32x3. On the 2-core CPU the nf-32
# DDPM++ / NCSN++ steps at batch 64 ran 1.19x / 1.11x faster in parts of 16 than whole
# (gradient accumulation in parts of 8, 16 or 32 was alike); the forward pass alone gains
# nothing (docs/performance_history.md, "What changed: the train step's network in parts").
CPU_PART_VALUES = 16 * 32 * 32 * 3


def auto_network_parts(batch: int, values_per_example: int) -> int:
  """training.network_parts = 0: how many parts the network's batch is split into.

  On XLA:CPU, the fewest parts of at most CPU_PART_VALUES input values each that
  divide every device's share of `batch` (1 where that would leave parts under half
  that size); on accelerators 1, the whole batch.
  """
  if jax.default_backend() != 'cpu':
    return 1
  devices = jax.device_count()
  per_device = batch // devices if batch % devices == 0 else batch
  rows = max(1, CPU_PART_VALUES // max(1, values_per_example))
  for parts in range(-(-per_device // rows), per_device + 1):
    if per_device % parts == 0:
      return parts if 2 * (per_device // parts) >= rows else 1
  return 1


def _unsplit(parts: list[Any], batch: int) -> Any:
  """Inverse of `microbatch`: part i's rows back to rows i, i + m, ... of the batch."""
  return jax.tree.map(
      lambda *p: jnp.stack(p, axis=1).reshape((batch,) + p[0].shape[1:]), *parts)


def parted_network(network_fn: NetworkFn, params: Any, rng: Array, parts: int = 0):
  """The training network, evaluated in `parts` strided parts of its batch (0: automatic).

  Every argument and output of the net has the batch as its leading axis, and every
  network here treats examples independently (GroupNorm, attention and convolutions are
  per example), so the parted net is the whole net up to float rounding: the same
  outputs, hence the loss and its gradient, with the loss's own draws (t, z) unchanged.
  Only dropout differs: part i draws its masks with fold_in(rng, i), masks of the same
  law. Why: the backward pass of a large batch overflows the CPU's caches
  (`CPU_PART_VALUES`); unlike `accumulated_value_and_grad` the loss still sees the
  whole batch. One part (`auto_network_parts` on accelerators) is the whole net, its
  dropout key unchanged.
  """
  whole = network_fn(params, train=True, rng=rng)
  if parts == 1 or not callable(whole):
    return whole

  def net(*args):
    batch = args[0].shape[0]
    m = parts or auto_network_parts(batch, args[0].size // max(1, batch))
    if m == 1:
      return whole(*args)
    if batch % m:
      raise ConfigError(f'training.network_parts={m} does not divide the network\'s batch '
                        f'{batch}; use a divisor of {batch}, or 0 (automatic)')
    return _unsplit([network_fn(params, train=True, rng=jax.random.fold_in(rng, i))(
        *microbatch(args, m, i)) for i in range(m)], batch)

  return net


def network_loss(loss: Callable[[Any, Array, Any], Array], network_fn: NetworkFn, *,
                 train: bool, parts: int = 0) -> LossFn:
  """Turns a loss of a network, loss(net, key, batch), into loss_fn(params, key, batch).

  In training the step's key is split once into (loss key, dropout key), so the loss's
  own draws (t, z, minibatch) and the dropout masks are independent, and the network
  runs in `parts` parts of its batch (`parted_network`; config.training.network_parts,
  0 automatic); in evaluation the network runs whole without dropout and the loss gets
  the whole key.

  Args:
    loss: loss(net, key, batch) -> scalar, `net` being what network_fn returns.
    network_fn: network_fn(params, train=..., rng=...) -> net.
    train: dropout on (training) or off (evaluation).
    parts: see `parted_network` (training only).
  """
  if not train:
    return lambda params, key, batch: loss(network_fn(params, train=False, rng=None), key, batch)

  def loss_fn(params, key, batch):
    loss_key, dropout_key = jax.random.split(key)
    return loss(parted_network(network_fn, params, dropout_key, parts), loss_key, batch)

  return loss_fn


def microbatch(batch: Any, microbatches: int, i: int) -> Any:
  """Microbatch i of `microbatches`: rows i, i + m, i + 2m, ... of every leaf of `batch`.

  Strided rather than contiguous, so that with the batch sharded over 'data' every
  device keeps its share of each microbatch (its rows are a contiguous block whose
  length `check_microbatches` makes a multiple of m).
  """
  return jax.tree.map(
      lambda b: b.reshape((b.shape[0] // microbatches, microbatches) + b.shape[1:])[:, i],
      batch)


def accumulated_value_and_grad(loss_fn: LossFn, microbatches: int = 1,
                               unroll: bool | None = None) -> LossFn:
  """value_and_grad of loss_fn, by gradient accumulation over `microbatches` parts.

  Each part gets the key fold_in(key, i) and the result is the mean of the parts'
  losses and gradients. For a loss that is a mean over equal parts of the batch
  (every objective here) that is the whole batch's loss and gradient, with other
  random draws (t, z, dropout) of the same law; microbatches=1 is plain
  value_and_grad with the step's own key. Why: only one part's activations are alive
  at a time, for a batch that does not fit in memory whole (for speed on XLA:CPU,
  `parted_network` splits the network alone and keeps the loss's draws). On
  accelerators the parts run in a `lax.scan`; on XLA:CPU they are unrolled for the
  reason in `get_multi_step`.

  Returns:
    grad_fn(params, key, batch) -> (loss, grads).
  """
  value_and_grad = jax.value_and_grad(loss_fn)
  if microbatches == 1:
    return value_and_grad
  if unroll is None:
    unroll = jax.default_backend() == 'cpu'

  def part(params, key, batch, i):
    return value_and_grad(params, jax.random.fold_in(key, i), microbatch(batch, microbatches, i))

  def grad_fn(params, key, batch):
    if unroll:
      parts = [part(params, key, batch, i) for i in range(microbatches)]
      total = jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *parts)
    else:
      zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(part, params, key, batch, 0))
      total, _ = jax.lax.scan(
          lambda acc, i: (jax.tree.map(jnp.add, acc, part(params, key, batch, i)), None),
          zero, jnp.arange(microbatches))
    return jax.tree.map(lambda x: x / microbatches, total)

  return grad_fn


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    ema_rate: float, ema_warmup: bool, microbatches: int = 1
                    ) -> Callable[[TrainState, Any], tuple[TrainState, Array]]:
  """One optimisation step with EMA; pure, so it can be jitted and scanned.

  Args:
    loss_fn: loss_fn(params, key, batch) -> scalar; key = fold_in(state.rng, state.step).
    optimizer: the optax transformation whose state is `state.opt_state`.
    ema_rate, ema_warmup: see `ema_update` (config.model.ema_rate / ema_warmup).
    microbatches: gradient accumulation over this many parts of the batch
      (`accumulated_value_and_grad`; config.training.microbatches).

  Returns:
    step_fn(state, batch) -> (state, loss), `batch` passed to loss_fn unchanged.
  """
  grad_fn = accumulated_value_and_grad(loss_fn, microbatches)

  def step_fn(state: TrainState, batch: Any):
    key = jax.random.fold_in(state.rng, state.step)
    value, grads = grad_fn(state.params, key, batch)
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
