"""models/weight_grad.py: the same values and derivatives as the lax ops it replaces.

All in float64, where the two sides are the same sums in another order: agreement to
1e-12 of the largest value (rounding is ~1e-16 per term); a wrong transpose, tap or
padding is O(1). Training uses the VJP with respect to both arguments, the likelihood's
divergence the JVP with respect to the input, and the custom rule has separate branches
for each tangent, so each combination is checked. `materialize` is checked to be the
identity exactly, and to survive XLA:CPU's compilation as one conditional per residual sum.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import weight_grad

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _close(got, want):
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(float(jnp.max(jnp.abs(want))), 1.))


def _check_derivatives(ours, ref, x, w, key):
  """Value, VJP in (x, w), and JVP with tangents in x, in w, and in both."""
  want, want_vjp = jax.vjp(ref, x, w)
  got, got_vjp = jax.vjp(ours, x, w)
  _close(got, want)
  g = jax.random.normal(key, want.shape, want.dtype)
  for a, b in zip(got_vjp(g), want_vjp(g)):
    _close(a, b)
  tx, tw = jax.random.normal(jax.random.fold_in(key, 1), x.shape, x.dtype), -0.5 * w
  for tangents in [(tx, tw), (tx, jnp.zeros_like(w)), (jnp.zeros_like(x), tw)]:
    _close(jax.jvp(ours, (x, w), tangents)[1], jax.jvp(ref, (x, w), tangents)[1])
  # Forward mode in x alone with w closed over (the likelihood's case: w gets a symbolic zero).
  _close(jax.jvp(lambda x: ours(x, w), (x,), (tx,))[1],
         jax.jvp(lambda x: ref(x, w), (x,), (tx,))[1])


@pytest.mark.parametrize('x_shape, k, strides, padding', [
    ((2, 6, 6, 3), 3, (1, 1), 'SAME'),                 # conv3x3
    ((2, 6, 4, 3), 3, (2, 2), 'SAME'),                 # Downsample(with_conv); pads bottom/right
    ((3, 5, 3, 2), 2, (1, 1), ((1, 0), (0, 1))),       # one phase of upsample_conv3x3
    ((2, 4, 5, 3), 1, (1, 1), 'SAME'),                 # conv1x1: the pointwise branch
    ((1, 5, 5, 2), 3, (1, 1), 'VALID'),
])
def test_conv_equals_lax_conv(x_shape, k, strides, padding):
  ours = functools.partial(weight_grad.conv_general_dilated, window_strides=strides,
                           padding=padding, dimension_numbers=NHWC)
  ref = functools.partial(jax.lax.conv_general_dilated, window_strides=strides,
                          padding=padding, dimension_numbers=NHWC)
  with jax.enable_x64(True):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, x_shape, jnp.float64)
    w = jax.random.normal(kw, (k, k, x_shape[-1], 4), jnp.float64)
    _check_derivatives(ours, ref, x, w, kg)


def test_dense_equals_tensordot_including_per_example_gradients():
  with jax.enable_x64(True):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(kx, (2, 3, 4, 5), jnp.float64)
    w = jax.random.normal(kw, (5, 6), jnp.float64)
    ref = lambda x, w: jnp.tensordot(x, w, axes=1)
    _check_derivatives(weight_grad.dense, ref, x, w, kg)
    # vmap of a gradient in w (per-example gradients) batches the custom rule too.
    loss = lambda f: (lambda w, xi: jnp.sum(jnp.sin(f(xi, w))))
    got = jax.vmap(jax.grad(loss(weight_grad.dense)), (None, 0))(w, x)
    want = jax.vmap(jax.grad(loss(ref)), (None, 0))(w, x)
    assert got.shape == (2, 5, 6)
    _close(got, want)


def test_other_convolutions_are_passed_to_lax_unchanged():
  # NCHW, dilation and groups are not what the custom rule handles: the call must be
  # exactly lax's (no custom_jvp in the trace) and give lax's value.
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 6, 6))
  w = jax.random.normal(jax.random.PRNGKey(3), (4, 4, 3, 3))
  for kwargs in [dict(dimension_numbers=('NCHW', 'OIHW', 'NCHW')),
                 dict(dimension_numbers=('NCHW', 'OIHW', 'NCHW'), rhs_dilation=(2, 2)),
                 dict(dimension_numbers=('NCHW', 'OIHW', 'NCHW'), feature_group_count=2)]:
    wk = w[:, :2] if kwargs.get('feature_group_count') else w
    f = functools.partial(weight_grad.conv_general_dilated, window_strides=(1, 1),
                          padding='SAME', **kwargs)
    assert 'custom_jvp' not in str(jax.make_jaxpr(f)(x, wk))
    np.testing.assert_array_equal(f(x, wk), jax.lax.conv_general_dilated(
        x, wk, (1, 1), 'SAME', **kwargs))


def test_plain_lax_ops_off_cpu(monkeypatch):
  # On GPU/TPU both functions are the plain lax ops (their libraries take the weight
  # gradient's operands in any layout); simulated by reporting another backend.
  monkeypatch.setattr(weight_grad, '_on_cpu', lambda: False)
  x, w = jnp.ones((2, 4, 4, 3)), jnp.ones((3, 3, 3, 5))
  conv = functools.partial(weight_grad.conv_general_dilated, window_strides=(1, 1),
                           padding='SAME', dimension_numbers=NHWC)
  for f, args in [(conv, (x, w)), (weight_grad.dense, (x, w[0, 0]))]:
    grad = jax.grad(lambda *a: jnp.sum(f(*a)), (0, 1))
    assert 'custom_jvp' not in str(jax.make_jaxpr(grad)(*args))


def test_weight_tangent_is_only_built_when_the_weights_are_differentiated():
  # Sampling and the likelihood differentiate in x only: with symbolic zeros for w the
  # rule must not build x^T (no transpose in the trace); the training gradient does.
  x = jnp.ones((2, 4, 4, 3))
  w = jnp.ones((3, 3, 3, 5))
  conv = functools.partial(weight_grad.conv_general_dilated, window_strides=(1, 1),
                           padding='SAME', dimension_numbers=NHWC)
  in_x = jax.make_jaxpr(lambda x: jax.jvp(lambda x: conv(x, w), (x,), (x,)))(x)
  in_w = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv(x, w))))(w)
  assert 'transpose' not in str(in_x)
  assert 'transpose[permutation=(3, 1, 2, 0)]' in str(in_w)


def _tiny_refinenet(name):
  from models import ncsn
  from tests.test_models import make_config
  model = {'ncsn': ncsn.NCSN, 'ncsnv2_64': ncsn.NCSNv2_64}[name]
  return make_config(model.tiny_config_overrides())


@pytest.mark.parametrize('model_config', [
    # DDPM++-like: BigGAN blocks with nearest resampling (upsample_conv's phase convs), NIN skips.
    dict(resblock_type='biggan', fir=False, progressive='none', progressive_input='none'),
    # NCSN++-like: FIR resampling with convs (Conv2dResample), progressive paths (conv1x1 Combine).
    dict(resblock_type='biggan', fir=True, resamp_with_conv=True, progressive='output_skip',
         progressive_input='residual', progressive_combine='sum'),
    # RefineNets: undilated and dilated convs, CRP's residual chains (max / mean pools).
    # NCSN v1 (CondInstanceNorm++ throughout) compiles for 30 s: slow.
    'ncsnv2_64', pytest.param('ncsn', marks=pytest.mark.slow),
])
def test_network_gradients_equal_those_of_plain_lax_ops(model_config):
  # The whole network wired with weight_grad against the same network traced with plain
  # lax ops (weight_grad.plain_lax_ops), same parameters and inputs: the loss and every
  # parameter's gradient agree. GroupNorm computes in float32, so the two sides differ by
  # float32 rounding in another summation order (~1e-6 relative); a miswired layer would
  # differ by O(1). Tolerance 1e-4 of each gradient's largest entry.
  from models import create_model
  from tests.test_models import images, random_params, tiny_ncsnpp
  if isinstance(model_config, str):
    model = create_model(_tiny_refinenet(model_config))
    x, labels = images(batch=3), jnp.array([0, 4, 9])   # noise-level indices, L = 10
  else:
    model = create_model(tiny_ncsnpp(dropout=0., init_scale=1., **model_config))
    x, labels = images(batch=3), jnp.array([0.1, 0.5, 2.])
  params = random_params(model, x, labels)
  def loss(p):   # a new function object per side: JAX caches traces per function
    return jnp.mean(jnp.square(model.apply(p, x, labels, train=True) - x))

  plain_loss = lambda p: loss(p)  # noqa: E731
  with weight_grad.plain_lax_ops():
    plain_jaxpr = str(jax.make_jaxpr(plain_loss)(params))
    assert 'custom_jvp_call' not in plain_jaxpr and 'cond[' not in plain_jaxpr
    want_loss, want = jax.jit(jax.value_and_grad(plain_loss))(params)
  wired = str(jax.make_jaxpr(loss)(params))
  assert 'custom_jvp_call' in wired and 'cond[' in wired   # weight_grad's ops, materialize
  got_loss, got = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  # Some gradients are zero in exact arithmetic (the attention key's bias: softmax is
  # invariant to q.b, constant over the keys); both sides then hold rounding noise of the
  # gradient's overall scale (~1e-13 here), so the floor is float32's epsilon times the
  # largest gradient of the network.
  floor = 1.2e-7 * max(float(jnp.max(jnp.abs(b))) for b in jax.tree_util.tree_leaves(want))
  leaves = zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want))
  for (path, a), b in leaves:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(b))) + floor,
                               err_msg=jax.tree_util.keystr(path))


def _residual_chain(x, ws, barrier):
  """Six residual blocks h <- (h + conv(swish(h))) / sqrt(2), each sum through `barrier`."""
  h = x
  for w in ws:
    c = jax.lax.conv_general_dilated(jax.nn.silu(h), w, (1, 1), 'SAME', dimension_numbers=NHWC)
    h = barrier((h + c) / np.sqrt(2.))
  return jnp.sum(h ** 2)


def test_materialize_is_the_identity_in_value_jvp_and_vjp():
  # Exactly: both branches of its conditional are the identity, whatever the predicate
  # (x[0] > 0 is false for the second input, and NaN takes the same branch).
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  for v in (x, -x, x.at[0, 0, 0, 0].set(jnp.nan)):
    y, y_dot = jax.jvp(weight_grad.materialize, (v,), (2 * v,))
    y2, vjp = jax.vjp(weight_grad.materialize, v)
    np.testing.assert_array_equal(y, v)
    np.testing.assert_array_equal(y2, v)
    np.testing.assert_array_equal(y_dot, 2 * v)
    np.testing.assert_array_equal(vjp(3 * v)[0], 3 * v)


def test_materialize_keeps_residual_sums_out_of_their_consumers_fusions():
  # The point of materialize: XLA:CPU keeps one conditional per residual sum in the
  # forward pass and per cotangent in the backward pass (6 + 6 here), so no fusion
  # recomputes the chain of earlier sums; without it, the backward's fusions take up to
  # 21 operands in this 6-block chain (77 in the DDPM++ step). The gradients are the same
  # up to float32 rounding in another summation order.
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 8))
  ws = [0.05 * jax.random.normal(jax.random.PRNGKey(2 + i), (3, 3, 8, 8)) for i in range(6)]

  def compiled(barrier):
    grad = jax.jit(jax.grad(lambda x, ws: _residual_chain(x, ws, barrier), argnums=(0, 1)))
    text = grad.lower(x, ws).compile().as_text()
    operands = [line.count('%') for line in text.splitlines() if ' fusion(' in line]
    return grad(x, ws), text.count(' conditional('), max(operands)

  want, plain_conds, plain_operands = compiled(lambda h: h)
  got, conds, operands = compiled(weight_grad.materialize)
  assert plain_conds == 0 and conds == 12
  assert operands <= 8 < plain_operands
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_materialize_is_plain_off_cpu(monkeypatch):
  monkeypatch.setattr(weight_grad, '_on_cpu', lambda: False)
  x = jnp.ones((2, 3))
  assert 'cond' not in str(jax.make_jaxpr(jax.grad(
      lambda x: jnp.sum(weight_grad.materialize(x) ** 2)))(x))
