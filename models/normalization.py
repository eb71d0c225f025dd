"""Instance normalisations of NCSN v1 / NCSNv2 (Song & Ermon 2019, App. A.1).

InstanceNorm++ (Eq. 9 of Song & Ermon 2019) normalises each channel over its
pixels, then adds back the channel means, standardised across channels, times a
learned alpha, so that the relative colour of a feature map is not lost:

    z_k = gamma_k (x_k - mu_k) / s_k + beta_k + alpha_k (mu_k - m) / sqrt(v + 1e-5)

where mu_k, s_k are the mean and standard deviation of channel k over its
pixels (s_k = sqrt(var + 1e-5)), and m, v the mean and (biased) variance of the
mu_k over channels
(score_sde_pytorch: the unbiased one, `unbiased=True`). The conditional version (CondInstanceNorm++) looks gamma,
alpha, beta up per noise level. Parameter names and initialisations follow
yang-song/score_sde's models/normalization.py (gamma, alpha ~ N(1, 0.02^2),
beta = 0).

Arrays are NHWC: [B, H, W, C]; noise-level indices are [B] int.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

_EPS = 1e-5


def _scale_init(key, shape, dtype=jnp.float32):
  """N(1, 0.02^2), as NCSN's gamma and alpha."""
  return 1. + 0.02 * jax.random.normal(key, shape, dtype)


def _instance_stats(x: jax.Array, unbiased: bool = False):
  """Per-channel normalised x, and the standardised channel means.

  unbiased: the variance v of the channel means with Bessel's correction
    (score_sde_pytorch's `torch.var`); biased (score_sde's JAX) by default.

  Returns:
    h: (x - mu_k) / s_k, [B, H, W, C].
    means_plus: (mu_k - m) / sqrt(v + eps), [B, 1, 1, C].
  """
  means = jnp.mean(x, axis=(1, 2), keepdims=True)
  h = (x - means) / jnp.sqrt(jnp.var(x, axis=(1, 2), keepdims=True) + _EPS)
  m = jnp.mean(means, axis=-1, keepdims=True)
  v = jnp.var(means, axis=-1, keepdims=True, ddof=1 if unbiased else 0)
  return h, (means - m) / jnp.sqrt(v + _EPS)


class InstanceNormPlus(nn.Module):
  """InstanceNorm++ (NCSNv2's normaliser): params alpha, gamma, beta, each [C].

  Attributes:
    bias: learn beta.
    unbiased: unbiased variance of the channel means (score_sde_pytorch).
  """
  bias: bool = True
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
    c = x.shape[-1]
    h, means_plus = _instance_stats(x, self.unbiased)
    h = h + means_plus * self.param('alpha', _scale_init, (c,))
    h = h * self.param('gamma', _scale_init, (c,))
    if self.bias:
      h = h + self.param('beta', jax.nn.initializers.zeros, (c,))
    return h


class CondInstanceNormPlus(nn.Module):
  """Conditional InstanceNorm++ (NCSN v1): gamma, alpha, beta per noise level.

  One embedding table [num_classes, 3C] holds [gamma | alpha | beta] for each
  noise level (2C, without beta, when bias=False).

  Attributes:
    num_classes: number of noise levels L.
    bias: learn beta.
    unbiased: unbiased variance of the channel means (score_sde_pytorch).
  """
  num_classes: int = 10
  bias: bool = True
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]; y [B] int noise-level indices. Returns: [B, H, W, C]."""
    c = x.shape[-1]
    parts = 3 if self.bias else 2

    def init(key, shape, dtype=jnp.float32):
      table = _scale_init(key, shape, dtype)
      return table.at[:, 2 * c:].set(0.) if self.bias else table   # beta starts at 0

    embed = nn.Embed(self.num_classes, parts * c, embedding_init=init)(y)
    gamma, alpha = embed[:, None, None, :c], embed[:, None, None, c:2 * c]
    h, means_plus = _instance_stats(x, self.unbiased)
    h = gamma * (h + means_plus * alpha)
    if self.bias:
      h = h + embed[:, None, None, 2 * c:]
    return h
