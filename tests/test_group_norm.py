"""models/group_norm.py against flax.linen.GroupNorm and against GroupNorm's definition.

Tolerances: both compute float32 statistics by one-pass variance, in different
summation orders, so they agree to a few float32 ulps of the normalised output
(|y| ~ 1-3): 2e-5 absolute on values, 2e-5 relative to the largest gradient.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.group_norm import GroupNorm, group_norm
from models import layers


def _inputs(shape, mean=1., std=2., seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(mean, std, shape).astype(np.float32))
  c = shape[-1]
  scale = jnp.asarray(rng.normal(1., 0.3, c).astype(np.float32))
  bias = jnp.asarray(rng.normal(0., 0.3, c).astype(np.float32))
  cot = jnp.asarray(rng.normal(0., 1., shape).astype(np.float32))
  return x, scale, bias, cot


def _flax(x, scale, bias, groups):
  return nn.GroupNorm(num_groups=groups, epsilon=1e-6).apply(
      {'params': {'scale': scale, 'bias': bias}}, x)


@pytest.mark.parametrize('shape,groups', [((3, 8, 8, 16), 4), ((2, 4, 4, 12), 1),
                                          ((2, 4, 4, 8), 8), ((4, 6, 32), 8), ((2, 16), 4)])
def test_matches_definition_and_flax(shape, groups):
  x, scale, bias, _ = _inputs(shape)
  y = group_norm(x, scale, bias, groups)
  # The definition, in float64: per sample and group, standardise over the group's
  # pixels and channels (biased variance), then scale and shift per channel.
  xd = np.asarray(x, np.float64).reshape(shape[0], -1, groups, shape[-1] // groups)
  m = xd.mean(axis=(1, 3), keepdims=True)
  v = xd.var(axis=(1, 3), keepdims=True)
  want = ((xd - m) / np.sqrt(v + 1e-6)).reshape(shape) * np.asarray(scale) + np.asarray(bias)
  np.testing.assert_allclose(np.asarray(y), want, atol=2e-5)
  np.testing.assert_allclose(np.asarray(y), np.asarray(_flax(x, scale, bias, groups)), atol=2e-5)


def test_gradients_match_flax():
  x, scale, bias, cot = _inputs((4, 8, 8, 32), mean=3.)   # a large mean: one-pass cancellation
  ours = jax.grad(lambda *a: jnp.sum(jax.nn.silu(group_norm(*a, 8)) * cot), argnums=(0, 1, 2))
  theirs = jax.grad(lambda *a: jnp.sum(jax.nn.silu(_flax(*a, 8)) * cot), argnums=(0, 1, 2))
  for g, h in zip(ours(x, scale, bias), theirs(x, scale, bias)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(h), atol=2e-5 * float(jnp.max(jnp.abs(h))))


def test_forward_mode_for_the_likelihood():
  """likelihood.divergence takes JVPs through the network: they must exist and equal Flax's."""
  x, scale, bias, cot = _inputs((2, 4, 4, 8))
  _, ours = jax.jvp(lambda x: group_norm(x, scale, bias, 4), (x,), (cot,))
  _, theirs = jax.jvp(lambda x: _flax(x, scale, bias, 4), (x,), (cot,))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)
  # A direction along x itself leaves GroupNorm's output unchanged up to eps: y(x(1+h)) = y(x).
  _, along = jax.jvp(lambda x: group_norm(x - jnp.mean(x), scale, bias, 1), (x,), (x - jnp.mean(x),))
  assert float(jnp.max(jnp.abs(along))) < 1e-3


def test_drop_in_parameters_and_names():
  x = jnp.ones((2, 4, 4, 16))

  class Net(nn.Module):
    flax_norm: bool

    @nn.compact
    def __call__(self, x):
      norm = nn.GroupNorm if self.flax_norm else GroupNorm
      return norm(num_groups=4, epsilon=1e-6)(norm(num_groups=4, epsilon=1e-6)(x))

  ours = Net(False).init(jax.random.PRNGKey(0), x)
  theirs = Net(True).init(jax.random.PRNGKey(0), x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == \
      jax.tree.map(lambda a: (a.shape, a.dtype), theirs)
  assert sorted(ours['params']) == ['GroupNorm_0', 'GroupNorm_1']
  assert isinstance(layers.group_norm(64), GroupNorm) and layers.group_norm(64).num_groups == 16


def test_bfloat16_input_keeps_float32_statistics():
  x, scale, bias, _ = _inputs((2, 8, 8, 16), mean=4., std=1.)
  y = group_norm(x.astype(jnp.bfloat16), scale.astype(jnp.bfloat16), bias.astype(jnp.bfloat16), 4)
  assert y.dtype == jnp.bfloat16
  want = group_norm(x.astype(jnp.bfloat16).astype(jnp.float32), scale.astype(jnp.bfloat16)
                    .astype(jnp.float32), bias.astype(jnp.bfloat16).astype(jnp.float32), 4)
  # Only the final cast rounds: bfloat16 keeps 8 bits, relative error <= 2^-8.
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want),
                             rtol=2 ** -8, atol=2 ** -8)


def test_indivisible_channels_name_the_fix():
  with pytest.raises(ValueError, match='not divisible by num_groups=4'):
    GroupNorm(num_groups=4).init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 6)))
