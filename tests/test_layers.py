"""Tests for the building blocks of the score networks (models/layers.py and the layers they
use), each against its definition or the paper's formula. Networks: tests/test_models.py."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import layers
from tests.test_models import cheap_jit, images, init


def test_positional_embedding_matches_ddpm_formula():
  t = jnp.array([0., 1., 250.])
  emb = layers.get_timestep_embedding(t, 8)
  assert emb.shape == (3, 8)
  # Frequencies run from 1 down to 1/10000 over the first half.
  np.testing.assert_allclose(emb[:, 0], np.sin([0., 1., 250.]), atol=1e-5)
  np.testing.assert_allclose(emb[:, 3], np.sin(np.array([0., 1., 250.]) / 1e4),
                             atol=1e-6)
  np.testing.assert_allclose(emb[:, 4], np.cos([0., 1., 250.]), atol=1e-5)
  # Odd widths are zero-padded by one column.
  assert np.all(layers.get_timestep_embedding(t, 9)[:, -1] == 0)


def test_fourier_projection_is_not_trained():
  gfp = layers.GaussianFourierProjection(embedding_size=4, scale=16.)
  labels = jnp.array([0.3, -1.2])
  params = gfp.init(jax.random.PRNGKey(0), labels)
  assert params['params']['W'].shape == (4,)
  grads = jax.grad(lambda p: gfp.apply(p, labels).sum())(params)
  assert np.all(grads['params']['W'] == 0)


@pytest.mark.parametrize('block', [layers.ResnetBlockDDPM,
                                   layers.ResnetBlockBigGAN])
@pytest.mark.parametrize('skip_rescale', [False, True])
def test_resblock_starts_near_identity(block, skip_rescale):
  # init_scale=0 zeroes the last conv, so the block returns its skip branch.
  x, temb = images(channels=8), jnp.ones((2, 32))
  net = block(out_ch=8, init_scale=0., skip_rescale=skip_rescale)
  _, out = init(net, x, temb)
  expected = x / np.sqrt(2.) if skip_rescale else x
  np.testing.assert_allclose(out, expected, atol=1e-4)


def test_attention_starts_near_identity_and_mixes_pixels():
  x = images(channels=8)
  _, out = init(layers.AttnBlock(init_scale=0.), x)
  np.testing.assert_allclose(out, x, atol=1e-4)
  # With a real output projection, one pixel's output depends on the others.
  attn = layers.AttnBlock(init_scale=1.)
  params, out = init(attn, x)
  out2 = cheap_jit(attn.apply)(params, x.at[:, 7, 7].add(3.))
  assert not np.allclose(out[:, 0, 0], out2[:, 0, 0])


def _attention_by_definition(params, x, skip_rescale, softmax, xp=np):
  """AttnBlock written out: GroupNorm, q/k/v NINs, softmax(q k^T / sqrt(C)) v, output NIN
  (in NumPy, or in JAX with xp=jnp)."""
  p = params['params']
  b, height, width, c = x.shape
  g = min(c // 4, 32)
  xg = x.reshape(b, -1, g, c // g)
  h = (xg - xg.mean((1, 3), keepdims=True)) / xp.sqrt(xg.var((1, 3), keepdims=True) + 1e-6)
  h = h.reshape(b, -1, c) * p['GroupNorm_0']['scale'] + p['GroupNorm_0']['bias']
  nin = lambda i, t: t @ p[f'NIN_{i}']['W'] + p[f'NIN_{i}']['b']  # noqa: E731
  w = softmax(xp.einsum('bqc,bkc->bqk', nin(0, h), nin(1, h)) / np.sqrt(c))
  out = x + nin(3, xp.einsum('bqk,bkc->bqc', w, nin(2, h))).reshape(x.shape)
  return out / np.sqrt(2.) if skip_rescale else out


@pytest.mark.parametrize('skip_rescale', [False, True])
def test_attention_is_softmax_attention_by_its_definition(skip_rescale):
  # The block normalises the softmax after its product with v (models/layers.py); the
  # definition normalises the weights. Value: against float64 NumPy, float32 rounding
  # (1e-5 of the output's scale). Gradient: against jax.nn.softmax in the same float32
  # JAX; a wrong stop_gradient on the max would show as an O(1) difference.
  x = 2. * images(channels=8)
  attn = layers.AttnBlock(init_scale=1., skip_rescale=skip_rescale)
  params, out = init(attn, x)

  def softmax64(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  want = _attention_by_definition(p64, np.asarray(x, np.float64), skip_rescale, softmax64)
  np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.abs(want).max())

  cot = images(channels=8, seed=2)
  loss = lambda f: lambda p, x: jnp.sum(f(p, x) * cot)  # noqa: E731
  by_def = functools.partial(_attention_by_definition, skip_rescale=skip_rescale,
                             softmax=functools.partial(jax.nn.softmax, axis=-1), xp=jnp)
  got = cheap_jit(jax.grad(loss(attn.apply), argnums=(0, 1)))(params, x)
  ref = cheap_jit(jax.grad(loss(by_def), argnums=(0, 1)))(params, x)
  # One scale for all leaves: the key bias's gradient is zero in exact arithmetic (softmax
  # ignores a shift shared by all keys), so its own scale is rounding noise.
  scale = max(float(np.abs(r).max()) for r in jax.tree.leaves(ref))
  for a, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, r, rtol=0, atol=2e-5 * scale)


def test_resampling():
  x = images(channels=4)
  np.testing.assert_allclose(layers.naive_downsample(x)[:, 1, 2],
                             x[:, 2:4, 4:6].mean(axis=(1, 2)), atol=1e-6)
  np.testing.assert_array_equal(
      layers.naive_downsample(layers.naive_upsample(x)), x)
  for module, size in [(layers.Downsample(with_conv=True), 4),
                       (layers.Upsample(with_conv=True), 16)]:
    assert init(module, x)[1].shape == (2, size, size, 4)
  # Without a conv, neither resampling layer has parameters.
  assert not layers.Downsample().init(jax.random.PRNGKey(0), x)


def _conv_of_upsampled(x, w):
  """The definition: conv3x3(naive_upsample(x)), SAME, NHWC / HWIO."""
  return jax.lax.conv_general_dilated(layers.naive_upsample(x), w, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('shape', [(2, 4, 4, 3), (1, 5, 3, 2), (3, 1, 1, 4)])
def test_upsample_conv_equals_the_convolution_of_the_upsampled_image(shape):
  # In float64 both sides are the same sums in another order: agreement to 1e-12 of the
  # largest value (rounding is ~1e-16); a wrong tap or a phase off by one pixel is O(1).
  # Odd, non-square and 1x1 sizes exercise every border. Value, VJP (both arguments) and
  # JVP, since training uses the first two and the likelihood's divergence the third.
  from models.upsample_conv import upsample_conv3x3
  ours = functools.partial(upsample_conv3x3, window_strides=(1, 1), padding='SAME',
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  with jax.enable_x64(True):
    kx, kw, kg, kt = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(kx, shape, jnp.float64)
    w = jax.random.normal(kw, (3, 3, shape[-1], 5), jnp.float64)
    want, want_vjp = jax.vjp(_conv_of_upsampled, x, w)
    got, got_vjp = jax.vjp(ours, x, w)
    assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 5)
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale)
    g = jax.random.normal(kg, want.shape, jnp.float64)
    for a, b in zip(got_vjp(g), want_vjp(g)):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(b))))
    tx, tw = jax.random.normal(kt, shape, jnp.float64), w[::-1]
    _, t_got = jax.jvp(ours, (x, w), (tx, tw))
    _, t_want = jax.jvp(_conv_of_upsampled, (x, w), (tx, tw))
    np.testing.assert_allclose(t_got, t_want, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(t_want))))
  with pytest.raises(ValueError, match='3x3, stride-1, SAME'):
    upsample_conv3x3(x, w, (2, 2), 'SAME')


def test_dropout_is_flax_dropout_drawn_in_the_cpu_threefry_layout():
  # On CPU, layers.dropout is flax's Dropout with its mask drawn under
  # jax.threefry_partitionable(False): equal to it exactly for the same key. Its law:
  # entries kept with probability 1 - rate and scaled by 1 / (1 - rate); over 2^16 entries
  # the kept fraction is within 5 standard deviations (5 * 0.0017) of 0.75. Not in train
  # mode, the identity.
  import flax.linen as nn

  class Net(nn.Module):
    train: bool
    flax_dropout: bool = False   # the same submodule path ('Dropout_0'), so the same key

    @nn.compact
    def __call__(self, x):
      if self.flax_dropout:
        return nn.Dropout(0.25)(x, deterministic=not self.train)
      return layers.dropout(0.25, x, self.train)

  x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 16))
  rngs = {'dropout': jax.random.PRNGKey(1)}
  got = Net(train=True).apply({}, x, rngs=rngs)
  with jax.threefry_partitionable(False):
    want = Net(train=True, flax_dropout=True).apply({}, x, rngs=rngs)
  np.testing.assert_array_equal(got, want)
  default_layout = Net(train=True, flax_dropout=True).apply({}, x, rngs=rngs)
  assert float(jnp.mean(default_layout != got)) > 0.2   # the layout does change the draws
  kept = got != 0
  assert abs(float(jnp.mean(kept)) - 0.75) < 5 * math.sqrt(0.75 * 0.25 / x.size)
  np.testing.assert_allclose(got[kept], x[kept] / 0.75, rtol=1e-6)
  np.testing.assert_array_equal(Net(train=False).apply({}, x), x)


def test_upsampling_layers_equal_upsample_then_conv():
  # Upsample(with_conv) and the BigGAN block with up=True (not fir) compute in the
  # low-resolution domain; against the layers' definition with the same parameters
  # (float32, 1e-5 of the largest value: the summed taps round differently).
  x = images(channels=4)
  up = layers.Upsample(with_conv=True)
  params, out = init(up, x)
  k = params['params']['Conv_0']
  want = _conv_of_upsampled(x, k['kernel']) + k['bias']
  np.testing.assert_allclose(out, want, atol=1e-5 * float(jnp.max(jnp.abs(want))))
  block = layers.ResnetBlockBigGAN(up=True, out_ch=6, init_scale=1., dropout=0.)
  params, out = init(block, x)
  p = params['params']
  act, gn = layers.get_act('swish'), layers.group_norm

  def conv(h, q, upsampled=False):
    h = layers.naive_upsample(h) if upsampled else h
    return jax.lax.conv_general_dilated(h, q['kernel'], (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + q['bias']

  h = act(gn(4).apply({'params': p['GroupNorm_0']}, x))
  h = act(gn(6).apply({'params': p['GroupNorm_1']}, conv(h, p['Conv_0'], upsampled=True)))
  want = (conv(h, p['Conv_1']) + conv(x, p['Conv_2'], upsampled=True)) / np.sqrt(2.)
  assert out.shape == (2, 16, 16, 6)
  np.testing.assert_allclose(out, want, atol=1e-5 * float(jnp.max(jnp.abs(want))))


# ------------------------------------------- pooling in two 1-D passes ---


_POOL_CASES = {   # (pool, window, strides, padding, kwargs)
    'crp_max': ('max', (5, 5), (1, 1), 'SAME', {}),           # NCSNv2's CRP
    'crp_avg': ('avg', (5, 5), (1, 1), 'SAME', {}),           # NCSN v1's CRP (counts the padding)
    'inception_avg': ('avg', (3, 3), (1, 1), ((1, 1), (1, 1)), {'count_include_pad': False}),
    'inception_max_s2': ('max', (3, 3), (2, 2), 'VALID', {}),
    'inception_max_pad': ('max', (3, 3), (1, 1), ((1, 1), (1, 1)), {}),
}


@pytest.mark.parametrize('case', list(_POOL_CASES))
def test_pool_in_two_passes_equals_the_2d_pool(case):
  # models/pooling.separable_pool (a kh x 1 then a 1 x kw window) against one kh x kw
  # window, on odd sizes so that padding and strides reach the edges. A max over a
  # rectangle is a max of maxes, so its value is bitwise equal; the mean's is equal to
  # float32 rounding (two divisions against one, sums in another order: ~1e-7 of the
  # values' scale). Gradients (through sin, so that each output's cotangent differs):
  # each input's gradient sums the cotangents of the windows that pick it (max; random
  # normal input has no ties) or a share of those it is in (mean), in another order:
  # equal to 1e-6 of the gradient's scale. A wrong size, padding, stride or axis moves
  # values by O(1).
  import flax.linen as nn
  from models.pooling import separable_pool
  kind, window, strides, padding, kwargs = _POOL_CASES[case]
  fn = {'max': nn.max_pool, 'avg': nn.avg_pool}[kind]
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 7, 3))
  two_pass = lambda x: separable_pool(fn, x, window, strides, padding, **kwargs)  # noqa: E731
  one_pass = lambda x: fn(x, window, strides=strides, padding=padding, **kwargs)  # noqa: E731
  got, want = two_pass(x), one_pass(x)
  assert got.shape == want.shape
  if kind == 'max':
    np.testing.assert_array_equal(got, want)
  else:
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # The corner's window holds 3 x 3 real pixels (crp: of 25, the padding counted;
    # inception: of 4, the padding not counted, as TensorFlow's average pool).
    n = 3 if case == 'crp_avg' else 2
    np.testing.assert_allclose(
        want[0, 0, 0], jnp.sum(x[0, :n, :n], (0, 1)) / (25. if case == 'crp_avg' else 4.),
        atol=1e-6)
  loss = lambda f: (lambda x: jnp.sum(jnp.sin(3. * f(x))))  # noqa: E731
  g_got, g_want = jax.grad(loss(two_pass))(x), jax.grad(loss(one_pass))(x)
  scale = float(jnp.max(jnp.abs(g_want)))
  assert scale > 0.3
  np.testing.assert_allclose(g_got, g_want, rtol=0, atol=1e-6 * scale)
  # Forward mode too (the likelihood's JVPs).
  t = jax.random.normal(jax.random.PRNGKey(4), x.shape)
  np.testing.assert_allclose(jax.jvp(two_pass, (x,), (t,))[1], jax.jvp(one_pass, (x,), (t,))[1],
                             rtol=0, atol=1e-6)


def test_crp_pools_in_two_passes_and_the_benchmarks_switch():
  # The CRP blocks' pool is the separable one; pooling.one_window_pools (what the benchmarks'
  # A/B swaps) traces the single 5x5 window instead, and restores the two passes after.
  import flax.linen as nn
  from models import pooling, refinenet_layers
  x = jax.random.normal(jax.random.PRNGKey(5), (1, 6, 6, 2))
  jaxpr = lambda: str(jax.make_jaxpr(lambda x: refinenet_layers.pool_5x5(nn.max_pool, x))(x))  # noqa: E731
  two = jaxpr()
  assert two.count('reduce_window_max') == 2 and 'window_dimensions=(1, 5, 1, 1)' in two
  with pooling.one_window_pools():
    one = jaxpr()
  assert one.count('reduce_window_max') == 1 and 'window_dimensions=(1, 5, 5, 1)' in one
  assert jaxpr() == two
