"""The shared train step: one SGD step on a quadratic lands on its minimiser; the EMA rule.

With loss 0.5 |p - c|^2 the gradient is p - c, so one SGD step of lr = 1 gives
p' = p - (p - c) = c exactly (in float32 too: p - (p - c) is exact for these small
dyadic values), and the EMA after step k is rate * e + (1 - rate) * c.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import objectives
import optim
import train_state
from tests.helpers import tiny_config

C = {'w': jnp.array([1.5, -2., 0.25]), 'b': jnp.array(4.)}
P0 = {'w': jnp.array([0.5, 1., -3.]), 'b': jnp.array(-1.)}
E0 = {'w': jnp.array([2., 0., 1.]), 'b': jnp.array(0.5)}


def quadratic(params, key, batch):
  del key, batch
  return 0.5 * sum(jnp.sum((p - c) ** 2) for p, c in zip(jax.tree.leaves(params),
                                                          jax.tree.leaves(C)))


def _state(step=0):
  return train_state.TrainState(step=jnp.int32(step), params=P0, ema_params=E0,
                                opt_state=optax.sgd(1.).init(P0), rng=jax.random.PRNGKey(0))


@pytest.mark.parametrize('warmup,step', [(False, 0), (True, 0), (True, 7)])
def test_sgd_step_on_a_quadratic_reaches_the_minimiser_and_updates_the_ema(warmup, step):
  rate = 0.75   # a dyadic rate, so rate * e + (1 - rate) * c has few rounding steps
  fn = jax.jit(train_state.make_train_step(quadratic, optax.sgd(1.), rate, warmup))
  state, value = fn(_state(step), None)
  # The loss is evaluated before the update, at P0.
  expected_loss = 0.5 * sum(float(np.sum((np.asarray(p) - np.asarray(c)) ** 2))
                            for p, c in zip(jax.tree.leaves(P0), jax.tree.leaves(C)))
  np.testing.assert_allclose(float(value), expected_loss, rtol=1e-6)
  assert int(state.step) == step + 1
  for p, c in zip(jax.tree.leaves(state.params), jax.tree.leaves(C)):
    np.testing.assert_array_equal(p, c)
  # ema_warmup: rate_k = min(rate, (1 + k) / (10 + k)); 0.1 at k = 0, 8/17 at k = 7.
  r = min(rate, (1. + step) / (10. + step)) if warmup else rate
  for e, e0, c in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(E0),
                      jax.tree.leaves(C)):
    np.testing.assert_allclose(e, r * np.asarray(e0) + (1. - r) * np.asarray(c),
                               rtol=1e-6, atol=1e-7)


def test_the_step_key_is_fold_in_of_rng_and_step_and_multi_step_equals_single_steps():
  # A loss that depends on its key: the step must pass fold_in(state.rng, state.step), so
  # two consecutive steps see different draws and a multi-step equals the single steps.
  def noisy(params, key, batch):
    return jnp.sum(params['w'] * jax.random.normal(key, (3,))) + 0. * batch

  fn = train_state.make_train_step(noisy, optax.sgd(0.1), 0.9, False)
  state0 = train_state.TrainState(step=jnp.int32(5), params={'w': jnp.ones(3)},
                                  ema_params={'w': jnp.ones(3)},
                                  opt_state=optax.sgd(0.1).init({'w': jnp.ones(3)}),
                                  rng=jax.random.PRNGKey(3))
  s1, v1 = fn(state0, jnp.zeros(()))
  s2, v2 = fn(s1, jnp.zeros(()))
  # d loss / d w = z, so one SGD step moves w by -0.1 z with z = normal(fold_in(rng, 5)).
  z5 = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(3), 5), (3,))
  np.testing.assert_allclose(s1.params['w'], 1. - 0.1 * z5, rtol=1e-6)
  for unroll in (False, True):
    s, vs = jax.jit(train_state.get_multi_step(fn, unroll))(state0, jnp.zeros((2,)))
    # rtol 1e-6: jit and scan may fuse the float32 update differently (1 ulp = 1.2e-7);
    # a wrong key or a skipped step changes these by O(0.1).
    np.testing.assert_allclose(vs, [v1, v2], rtol=1e-6)
    np.testing.assert_allclose(s.params['w'], s2.params['w'], rtol=1e-6)
    np.testing.assert_allclose(s.ema_params['w'], s2.ema_params['w'], rtol=1e-6)


def test_network_loss_splits_the_key_only_in_training():
  keys = {}

  def loss(net, key, batch):
    keys['loss'] = key
    return net + batch

  def network_fn(params, *, train, rng):
    keys['net'] = (train, rng)
    return params

  key = jax.random.PRNGKey(7)
  train_state.network_loss(loss, network_fn, train=True)(1., key, 2.)
  loss_key, dropout_key = jax.random.split(key)
  assert keys['net'][0] is True
  np.testing.assert_array_equal(keys['net'][1], dropout_key)
  np.testing.assert_array_equal(keys['loss'], loss_key)
  assert float(train_state.network_loss(loss, network_fn, train=False)(1., key, 2.)) == 3.
  assert keys['net'] == (False, None)
  np.testing.assert_array_equal(keys['loss'], key)


@pytest.mark.parametrize('objective', ['score', 'noise_classifier', 'time_classifier'])
def test_every_objective_runs_through_the_shared_step(objective, monkeypatch):
  # train.py's step for any training.objective is make_train_step with that objective's
  # loss_fn: spy on make_train_step and check it receives the registry's loss.
  from configs.dmcmc.defaults import add_dmcmc_configs
  import sde_lib
  from models import create_model
  config = add_dmcmc_configs(tiny_config('vesde'))
  config.training.objective = objective
  config.model.name = {'score': 'mlp', 'noise_classifier': 'noise_mlp',
                       'time_classifier': config.classifier.model}[objective]
  calls = []
  real = train_state.make_train_step
  monkeypatch.setattr(train_state, 'make_train_step',
                      lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  objectives.get_train_step(config, sde, model, optim.get_optimizer(config))
  ((loss_fn, _, rate, warmup), kw), = calls
  assert (rate, warmup) == (config.model.ema_rate, config.model.ema_warmup)
  assert kw == {'microbatches': 1}
  # The loss handed to the step equals the registry's builder's, value for value.
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
  batch = (x, jnp.arange(8) % 2) if objective == 'time_classifier' else x
  params = model.init(jax.random.PRNGKey(0), x, jnp.zeros((8,)), train=False)['params']
  key = jax.random.PRNGKey(2)
  expected = objectives.OBJECTIVES[objective](config, sde, model, train=True)(params, key, batch)
  assert float(loss_fn(params, key, batch)) == float(expected)


def test_unknown_objective_keeps_its_error():
  from errors import ConfigError
  config = tiny_config()
  config.training.objective = 'nope'
  with pytest.raises(ConfigError, match=r"^training.objective='nope' is unknown; valid: "
                                        r"noise_classifier, score, time_classifier$"):
    objectives.get_objective(config)


# --------------------------------------------------------------------------
# Gradient accumulation (training.microbatches).
# --------------------------------------------------------------------------

A = jnp.array([[0.5, -1.], [2., 0.25], [-0.75, 1.5]])


def per_example(params, key, batch):
  """A mean over the batch's rows of a nonlinear per-row loss; the key is unused."""
  del key
  out = jnp.tanh(batch['x'] @ A * params['w'] + params['b']) - batch['y'][:, None]
  return 0.5 * jnp.mean(jnp.sum(out ** 2, axis=-1))


def _batch(n=12):
  x = jax.random.normal(jax.random.PRNGKey(0), (n, 3))
  return {'x': x, 'y': jnp.linspace(-1., 1., n)}


def test_microbatch_i_is_every_mth_row():
  batch = _batch()
  for m in (2, 3, 4):
    for i in range(m):
      part = train_state.microbatch(batch, m, i)
      np.testing.assert_array_equal(part['x'], batch['x'][i::m])
      np.testing.assert_array_equal(part['y'], batch['y'][i::m])


@pytest.mark.parametrize('unroll', [True, False])
@pytest.mark.parametrize('m', [1, 2, 3, 4, 6])
def test_accumulated_gradient_equals_the_whole_batch_gradient(m, unroll):
  # A mean over m equal parts of a per-row mean is the whole mean: loss and gradient of the
  # accumulation equal the whole batch's up to float32 summation order (a few ulp at these
  # O(1) values, hence rtol 1e-6; a missing part or a wrong weight is off by O(1 / m)).
  params = {'w': jnp.array([0.3, -0.8]), 'b': jnp.array(0.1)}
  key, batch = jax.random.PRNGKey(1), _batch()
  want_v, want_g = jax.value_and_grad(per_example)(params, key, batch)
  v, g = jax.jit(train_state.accumulated_value_and_grad(per_example, m, unroll))(
      params, key, batch)
  np.testing.assert_allclose(v, want_v, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want_g)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('unroll', [True, False])
def test_each_part_of_the_score_loss_gets_fold_in_of_the_step_key(unroll):
  # The real DSM objective (dropout on): the accumulated loss and gradient are the mean of
  # the parts' own value_and_grad, part i at key fold_in(key, i) on rows i::m. The same
  # float32 computations in another order: rtol 1e-5. The step key itself (m = 1) is
  # unchanged, so runs without accumulation keep their draws.
  import sde_lib
  from models import create_model
  config = tiny_config('vpsde')
  config.model.dropout = 0.1
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  loss_fn = objectives.train_loss_fn(config, sde, model)
  x = jax.random.normal(jax.random.PRNGKey(4), (8, config.data.dim))
  params = model.init(jax.random.PRNGKey(0), x, jnp.zeros((8,)), train=False)['params']
  key, m = jax.random.PRNGKey(5), 2
  parts = [jax.value_and_grad(loss_fn)(params, jax.random.fold_in(key, i), x[i::m])
           for i in range(m)]
  v, g = jax.jit(train_state.accumulated_value_and_grad(loss_fn, m, unroll))(params, key, x)
  np.testing.assert_allclose(v, (parts[0][0] + parts[1][0]) / 2, rtol=1e-5)
  for a, b, c in zip(jax.tree.leaves(g), jax.tree.leaves(parts[0][1]),
                     jax.tree.leaves(parts[1][1])):
    np.testing.assert_allclose(a, (b + c) / 2, rtol=1e-5, atol=1e-7)
  v1, _ = train_state.accumulated_value_and_grad(loss_fn, 1)(params, key, x)
  assert float(v1) == float(loss_fn(params, key, x))


def test_microbatches_must_divide_the_per_device_batch():
  import parallel
  from errors import ConfigError
  parallel.check_microbatches(8 * jax.device_count(), 4, 'training.batch_size')
  with pytest.raises(ConfigError, match=r'^training.microbatches=3 does not divide the '
                                        r'per-device batch 8 .*use a divisor of 8$'):
    parallel.check_microbatches(8 * jax.device_count(), 3, 'training.batch_size')


# --------------------------------------------------------------------------
# The network in parts of its batch (training.network_parts).
# --------------------------------------------------------------------------

def _tiny_image(dropout, parts=0):
  """The tiny NCSN++ (GroupNorm, attention, FIR resampling) on 8x8x1 digits:
  (config, sde, model, params)."""
  import sde_lib
  from models import create_model
  from tests.helpers import host_state
  config = tiny_config('vpsde', image=True)
  config.model.dropout = dropout
  config.training.network_parts = parts
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  return config, sde, model, host_state(config, (8, 8, 1), scale=0.2).params


def test_the_parted_network_has_the_whole_networks_loss_and_gradient():
  # Dropout off, every op per example: the loss of the network in 4 strided parts and its
  # gradient are the whole network's, with the same (t, z) draws -- only float32
  # summation order differs (the weight gradients add 4 partial sums). Loss: rtol 1e-5 at
  # this O(10) value. Gradients, leaf by leaf in norm: 1e-4 relative (the attention's
  # query weights, 5e-6 in size, are sums with cancellation: 3e-5 measured), plus 1e-7 of
  # the largest gradient entry for leaves that are zero in exact arithmetic (the
  # attention's key bias: softmax ignores a shift common to all logits) and hold only
  # rounding. A part put back on the wrong rows or a missing part is off by O(1).
  x = jax.random.uniform(jax.random.PRNGKey(3), (16, 8, 8, 1), minval=-1., maxval=1.)
  key = jax.random.PRNGKey(9)
  results = {}
  for parts in (1, 4):
    config, sde, model, params = _tiny_image(dropout=0., parts=parts)
    loss_fn = objectives.train_loss_fn(config, sde, model)
    results[parts] = jax.jit(jax.value_and_grad(loss_fn))(params, key, x)
  (v1, g1), (v4, g4) = results[1], results[4]
  np.testing.assert_allclose(v4, v1, rtol=1e-5)
  scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(g1))
  for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g1)):
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b) + 1e-7 * scale


def test_parted_network_puts_each_part_back_on_its_rows_with_fold_in_dropout_keys():
  # With dropout on, part i is the network at dropout key fold_in(rng, i) on rows i::m
  # (the contract of parted_network), each output row back in its place; one part is the
  # whole network with the key unchanged. Identical float32 computations: exact.
  from models import utils as mutils
  config, sde, model, params = _tiny_image(dropout=0.3)

  def network_fn(params, *, train, rng):
    return mutils.score_fn_from_config(config, sde, model, params, train=train, rng=rng)

  x = jax.random.normal(jax.random.PRNGKey(1), (12, 8, 8, 1))
  t = jnp.linspace(0.1, 0.9, 12)
  rng = jax.random.PRNGKey(2)
  got = jax.jit(lambda p, x, t: train_state.parted_network(network_fn, p, rng, 3)(x, t))(
      params, x, t)
  for i in range(3):
    want = jax.jit(lambda p, x, t, i=i: network_fn(
        p, train=True, rng=jax.random.fold_in(rng, i))(x, t))(params, x[i::3], t[i::3])
    np.testing.assert_array_equal(got[i::3], want)
  whole = jax.jit(lambda p, x, t: network_fn(p, train=True, rng=rng)(x, t))(params, x, t)
  one = jax.jit(lambda p, x, t: train_state.parted_network(network_fn, p, rng, 1)(x, t))(
      params, x, t)
  np.testing.assert_array_equal(one, whole)
  assert not np.allclose(got, whole)   # dropout is on: other masks in the parted net


def test_automatic_network_parts(monkeypatch):
  # XLA:CPU: the fewest parts of <= 16 CIFAR images (49152 values) dividing each device's
  # share; whole where that would leave parts under 8 images; whole on accelerators.
  d = jax.device_count()
  auto = train_state.auto_network_parts
  assert auto(64 * d, 32 * 32 * 3) == 4
  assert auto(48 * d, 32 * 32 * 3) == 3
  assert auto(40 * d, 32 * 32 * 3) == 4         # 3 does not divide 40: 4 parts of 10
  assert auto(16 * d, 32 * 32 * 3) == 1
  assert auto(68 * d, 32 * 32 * 3) == 1         # 17 parts of 4 would be too small
  assert auto(64 * d, 8 * 8 * 1) == 1           # digits: parts of up to 768 rows
  assert auto(64 * d, 64 * 64 * 3) == 16        # parts of 4 64x64 images
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert auto(64 * d, 32 * 32 * 3) == 1


def test_network_parts_must_divide_each_microbatch():
  import parallel
  from errors import ConfigError
  d = jax.device_count()
  parallel.check_microbatches(16 * d, 2, 'training.batch_size', network_parts=4)
  with pytest.raises(ConfigError, match=r'^training.network_parts=3 does not divide the 8 '
                                        r'rows per device .*use a divisor of 8, or 0'):
    parallel.check_microbatches(16 * d, 2, 'training.batch_size', network_parts=3)
