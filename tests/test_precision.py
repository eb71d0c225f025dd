"""training.precision='bfloat16': bfloat16 compute, float32 params, optimizer state and loss."""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import losses
import objectives
import optim
import precision
import sde_lib
import train_state
from errors import ConfigError
from models import create_model
from tests.helpers import tiny_config


_PARAMS = {}   # embedding -> params: initialised once (on CPU the init compiles for ~10 s)


def _setup(precision, embedding='positional', abstract=False):
  """(config, sde, model, params, x); `abstract` gives the params' shapes only (for jaxprs).

  The params are float32 whatever training.precision says, so one init serves both
  precisions (`precision.compute_model` casts at compute time).
  """
  config = tiny_config('vpsde', image=True)
  config.model.init_scale = 1.   # no near-zero output layer: the loss depends on the network
  config.model.embedding_type = embedding
  config.training.precision = precision
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 1))

  def init():
    return model.init(jax.random.PRNGKey(0), x, jnp.ones((8,)))['params']

  if abstract:
    return config, sde, model, jax.eval_shape(init), x
  if embedding not in _PARAMS:
    _PARAMS[embedding] = jax.jit(init)()
  return config, sde, model, _PARAMS[embedding], x


def _loss_and_grads(config, sde, model, params, x):
  # The score loss in eval mode (no dropout) of the training.precision network.
  loss = losses.loss_fn_from_config(config, sde, precision.compute_model(config, model),
                                    train=False)

  def f(p):
    return loss(p, jax.random.PRNGKey(2), x)

  return jax.jit(jax.value_and_grad(f))(params)


def test_bfloat16_loss_and_gradients_match_float32(embedding='positional'):
  # bfloat16 keeps 8 mantissa bits: each rounding is within 2^-9 = 0.2% relative; through
  # the tiny U-Net's ~15 layers these add up to ~1% on the loss and a few % on the
  # gradient (measured 0.3% and 1.5%). Bounds: loss 2%, gradient 6% in global norm,
  # which a wrong cast (e.g. a layer's output left unscaled, or the float32 gradient
  # lost) exceeds by far.
  config, sde, model, params, x = _setup('float32', embedding)
  value32, grads32 = _loss_and_grads(config, sde, model, params, x)
  config.training.precision = 'bfloat16'
  value16, grads16 = _loss_and_grads(config, sde, model, params, x)
  assert value16.dtype == jnp.float32
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads16))
  np.testing.assert_allclose(float(value16), float(value32), rtol=2e-2)
  diff = jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in
                      zip(jax.tree.leaves(grads16), jax.tree.leaves(grads32))))
  norm = jnp.sqrt(sum(jnp.sum(b ** 2) for b in jax.tree.leaves(grads32)))
  assert float(diff / norm) < 6e-2, float(diff / norm)


def test_bfloat16_convolutions_run_in_bfloat16():
  # Every conv and matmul of the network must see bfloat16 operands; without the
  # per-module cast, the float32 time embedding added after the first conv of each
  # block would promote the rest of the block back to float32.
  config, sde, model, params, x = _setup('bfloat16', abstract=True)
  loss = losses.loss_fn_from_config(config, sde, precision.compute_model(config, model),
                                    train=False)
  jaxpr = jax.make_jaxpr(lambda p: loss(p, jax.random.PRNGKey(2), x))(params)
  dtypes = []

  def walk(j):   # the network sits inside pjit sub-jaxprs
    for eqn in j.eqns:
      if eqn.primitive.name in ('conv_general_dilated', 'dot_general'):
        dtypes.append(eqn.invars[0].aval.dtype)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  convs = list(dtypes)
  assert len(convs) > 10
  assert all(d == jnp.bfloat16 for d in convs), sorted({str(d) for d in convs})


def _short_run(precision, steps=10):
  config, sde, model, params, x = _setup(precision)
  optimizer = optim.get_optimizer(config)
  state = train_state.TrainState(step=jnp.int32(0), params=params, ema_params=params,
                                 opt_state=optimizer.init(params), rng=jax.random.PRNGKey(3))
  step = jax.jit(objectives.get_train_step(config, sde, model, optimizer))
  values = []
  for _ in range(steps):
    state, value = step(state, x)
    values.append(float(value))
  return state, np.asarray(values)


@pytest.mark.slow
def test_bfloat16_short_training_run_is_finite_and_tracks_float32():
  # Same keys, so step k draws the same t, z and dropout masks in both runs; 10 Adam steps
  # at lr 2e-4 move the params little, so each step's loss stays within the 2% of the
  # single-evaluation test above (the loss itself jumps by ~10% from step to step).
  state, values = _short_run('bfloat16')
  _, values32 = _short_run('float32')
  assert np.all(np.isfinite(values)), values
  for tree in (state.params, state.ema_params, state.opt_state):
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(tree)
               if jnp.issubdtype(a.dtype, jnp.floating))
  np.testing.assert_allclose(values, values32, rtol=2e-2)


def test_unknown_precision_is_a_config_error():
  config, sde, model, _, _ = _setup('float16', abstract=True)
  with pytest.raises(ConfigError, match='training.precision'):
    objectives.get_train_step(config, sde, model, optim.get_optimizer(config))
