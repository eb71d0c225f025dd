"""Layers shared by the score networks (NCSN++ / DDPM++ and the toy MLP).

The formulas follow yang-song/score_sde (models/layers.py, models/layerspp.py),
which in turn follow DDPM (Ho et al. 2020, diffusion_tf/nn.py). Every layer here
keeps score_sde's initialisation and parameter shapes, so that a network built
from them has the same parameter count as the reference for the same config.

Arrays are NHWC: `[B, H, W, C]`. Time embeddings are `[B, E]`.
"""
import contextlib
import functools
import math
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from errors import lookup
from models import up_or_down_sampling as fir_ops
from models.group_norm import GroupNorm
from models import weight_grad
from models.upsample_conv import upsample_conv3x3

# score_sde's `get_act`; 'lrelu' uses BigGAN's slope of 0.2.
ACTIVATIONS = {
    'swish': nn.swish,
    'elu': nn.elu,
    'relu': nn.relu,
    'lrelu': functools.partial(nn.leaky_relu, negative_slope=0.2),
}


def get_act(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation called `name` (ConfigError if unknown)."""
  return lookup(ACTIVATIONS, name, 'model.nonlinearity')


def default_init(scale: float = 1.) -> jax.nn.initializers.Initializer:
  """DDPM's initialiser: variance scaling, fan_avg, uniform.

  A scale of 0 becomes 1e-10 (variance_scaling rejects 0): layers that close a
  residual branch start (almost) at zero, so each block starts near identity.
  """
  scale = 1e-10 if scale == 0 else scale
  return jax.nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


def conv3x3(features: int, stride: int = 1, init_scale: float = 1.,
            upsample: bool = False) -> nn.Conv:
  """3x3 'SAME' convolution with DDPM initialisation and a zero bias.

  With stride 2 on an even size, 'SAME' pads one pixel at the bottom/right only,
  as score_sde's PyTorch port does explicitly. With `upsample`, the convolution of
  naive_upsample(x), computed without upsampling (models/upsample_conv.py); the
  parameters are the same. The weight gradient is laid out for XLA:CPU
  (models/weight_grad.py).
  """
  return nn.Conv(features, kernel_size=(3, 3), strides=(stride, stride),
                 padding='SAME', kernel_init=default_init(init_scale),
                 bias_init=jax.nn.initializers.zeros,
                 conv_general_dilated=(upsample_conv3x3 if upsample
                                       else weight_grad.conv_general_dilated))


def conv1x1(features: int, init_scale: float = 1.) -> nn.Conv:
  """1x1 convolution with DDPM initialisation and a zero bias."""
  return nn.Conv(features, kernel_size=(1, 1), padding='SAME',
                 kernel_init=default_init(init_scale),
                 bias_init=jax.nn.initializers.zeros,
                 conv_general_dilated=weight_grad.conv_general_dilated)


def dropout(rate: float, x: jax.Array, train: bool) -> jax.Array:
  """`nn.Dropout(rate)(x, deterministic=not train)`; on XLA:CPU its mask is drawn in
  threefry's non-partitionable layout.

  Why: with JAX's default (partitionable) layout XLA:CPU splits each mask's threefry
  into about ten fusions that each write a full-size u32 array (docs/performance.md).
  The mask has the same law either way (other draws for the same key). Not on
  accelerators, where the partitionable layout lets each device draw only its shard.
  """
  layout = (jax.threefry_partitionable(False) if jax.default_backend() == 'cpu'
            else contextlib.nullcontext())
  with layout:
    return nn.Dropout(rate)(x, deterministic=not train)


def group_norm(channels: int, num_groups: int = 0) -> GroupNorm:
  """score_sde's GroupNorm, epsilon 1e-6: NCSN++/DDPM++'s min(C // 4, 32) groups by
  default (num_groups=0), else `num_groups` (DDPM's 32 in both references). The
  module is models/group_norm.py's drop-in for flax.linen.GroupNorm (faster on CPU)."""
  return GroupNorm(num_groups=num_groups or min(channels // 4, 32), epsilon=1e-6)


def dense(features: int, init_scale: float = 1.) -> nn.Dense:
  """Dense layer with DDPM initialisation and a zero bias."""
  return nn.Dense(features, kernel_init=default_init(init_scale))


def skip_sum(x: jax.Array, h: jax.Array, skip_rescale: bool) -> jax.Array:
  """Residual sum; with `skip_rescale`, divided by sqrt(2) to keep the variance.

  Song et al. 2021, App. H ("rescaling skip connections by 1/sqrt(2)"). The sum is
  materialised on XLA:CPU, so that later blocks do not recompute it (weight_grad.py).
  """
  return weight_grad.materialize((x + h) / np.sqrt(2.) if skip_rescale else x + h)


# --------------------------------------------------------------------------
# Noise-level embeddings. Both map labels [B] to features [B, E].
# --------------------------------------------------------------------------


class GaussianFourierProjection(nn.Module):
  """Random Fourier features of a continuous noise label (Tancik et al. 2020).

  `W ~ N(0, scale^2)` is drawn at init and never trained (stop_gradient), but
  stays a parameter as in score_sde, so that checkpoints and counts match.

  Attributes:
    embedding_size: number of frequencies; the output has 2 * embedding_size.
    scale: standard deviation of the frequencies (score_sde's fourier_scale).
  """
  embedding_size: int = 256
  scale: float = 1.

  @nn.compact
  def __call__(self, labels: jax.Array) -> jax.Array:
    """Args: labels [B]. Returns: [B, 2 * embedding_size]."""
    w = self.param('W', jax.nn.initializers.normal(stddev=self.scale),
                   (self.embedding_size,))
    w = jax.lax.stop_gradient(w)
    proj = labels[:, None] * w[None, :] * 2 * jnp.pi
    return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


def get_timestep_embedding(timesteps: jax.Array, embedding_dim: int,
                           max_positions: int = 10000) -> jax.Array:
  """DDPM's sinusoidal embedding (Transformer positions, Vaswani et al. 2017).

  Frequencies are exp(-log(max_positions) * k / (half - 1)), k = 0..half-1;
  the output is [sin, cos], zero-padded by one column when embedding_dim is odd.

  Args:
    timesteps: [B] float or int labels (e.g. 999 * t or a discrete index).
    embedding_dim: E, the output width.
    max_positions: the period scale, 10000 as in DDPM.

  Returns:
    [B, E] float32.
  """
  assert timesteps.ndim == 1, timesteps.shape
  half_dim = embedding_dim // 2
  freq = math.log(max_positions) / (half_dim - 1)
  freq = jnp.exp(jnp.arange(half_dim, dtype=jnp.float32) * -freq)
  emb = timesteps.astype(jnp.float32)[:, None] * freq[None, :]
  emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
  if embedding_dim % 2 == 1:
    emb = jnp.pad(emb, [[0, 0], [0, 1]])
  return emb


# --------------------------------------------------------------------------
# Attention and resampling.
# --------------------------------------------------------------------------


class NIN(nn.Module):
  """Network-in-network: a per-pixel dense layer over the channel axis.

  Parameters are named `W` [C_in, C_out] and `b` [C_out], as in DDPM. The
  default init scale of 0.1 is DDPM's.
  """
  num_units: int
  init_scale: float = 0.1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [..., C_in]. Returns: [..., num_units]."""
    w = self.param('W', default_init(self.init_scale),
                   (x.shape[-1], self.num_units))
    b = self.param('b', jax.nn.initializers.zeros, (self.num_units,))
    return weight_grad.dense(x, w) + b   # = tensordot(x, w, 1); see models/weight_grad.py


class AttnBlock(nn.Module):
  """Single-head self-attention over all pixels (DDPM; score_sde's AttnBlockpp).

  Attributes:
    skip_rescale: divide the residual sum by sqrt(2).
    init_scale: init scale of the output projection (0 = starts at identity).
    num_groups: GroupNorm groups; 0 = min(C // 4, 32).
  """
  skip_rescale: bool = False
  init_scale: float = 0.
  num_groups: int = 0   # GroupNorm groups; 0 = min(C // 4, 32) (see group_norm)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H, W, C]."""
    b, height, width, c = x.shape
    h = group_norm(c, self.num_groups)(x)
    q, k, v = (NIN(c)(h).reshape(b, height * width, c) for _ in range(3))
    logits = jnp.einsum('bqc,bkc->bqk', q, k) * (c ** -0.5)
    # softmax(logits) @ v, normalised after the product: (e @ v) / sum(e), e = exp(logits -
    # max). Equal in exact arithmetic; it divides [B, HW, C] instead of the [B, HW, HW]
    # weights (DDPM++ forward at batch 64 4-8% faster on XLA:CPU, train step level). The max
    # is a constant shift, whose derivative cancels between the two factors.
    e = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
    h = jnp.einsum('bqk,bkc->bqc', e, v) / e.sum(-1, keepdims=True)
    h = NIN(c, init_scale=self.init_scale)(h.reshape(b, height, width, c))
    return skip_sum(x, h, self.skip_rescale)


def naive_upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling: [B, H, W, C] -> [B, 2H, 2W, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def naive_downsample(x: jax.Array) -> jax.Array:
  """2x2 mean pooling: [B, H, W, C] -> [B, H/2, W/2, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class Upsample(nn.Module):
  """2x upsampling, optionally with a 3x3 conv (score_sde's layerspp.Upsample).

  Without `fir`: nearest neighbour, then the conv. With `fir`: FIR upsampling
  with `fir_kernel`, fused with the conv when there is one.
  """
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[float] = (1, 3, 3, 1)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, 2H, 2W, out_ch or C]."""
    out_ch = self.out_ch or x.shape[-1]
    if self.fir:
      if not self.with_conv:
        return fir_ops.upsample_2d(x, self.fir_kernel)
      return fir_ops.Conv2dResample(out_ch, up=True, resample_kernel=self.fir_kernel,
                                    kernel_init=default_init())(x)
    if self.with_conv:
      return conv3x3(out_ch, upsample=True)(x)   # = conv3x3(naive_upsample(x))
    return naive_upsample(x)


class Downsample(nn.Module):
  """2x downsampling (score_sde's layerspp.Downsample).

  Without `fir`: a stride-2 3x3 conv, or 2x2 average pooling. With `fir`: FIR
  downsampling with `fir_kernel`, fused with the conv when there is one.
  """
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[float] = (1, 3, 3, 1)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H/2, W/2, out_ch or C]."""
    out_ch = self.out_ch or x.shape[-1]
    if self.fir:
      if not self.with_conv:
        return fir_ops.downsample_2d(x, self.fir_kernel)
      return fir_ops.Conv2dResample(out_ch, down=True, resample_kernel=self.fir_kernel,
                                    kernel_init=default_init())(x)
    if self.with_conv:
      return conv3x3(out_ch, stride=2)(x)
    return naive_downsample(x)


class Combine(nn.Module):
  """Merges the input pyramid into the main path (score_sde's layerspp.Combine).

  A 1x1 conv maps the pyramid x to y's channels, then 'sum' adds and 'cat'
  concatenates (doubling the channels).
  """
  method: str = 'sum'

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C_x], y [B, H, W, C]. Returns: [B, H, W, C or 2C]."""
    h = conv1x1(y.shape[-1])(x)
    if self.method == 'cat':
      return jnp.concatenate([h, y], axis=-1)
    return h + y


# --------------------------------------------------------------------------
# Residual blocks, conditioned on the time embedding.
# --------------------------------------------------------------------------


class ResnetBlockDDPM(nn.Module):
  """DDPM's residual block (score_sde's ResnetBlockDDPMpp).

  GroupNorm-act-conv, plus a per-channel bias from the time embedding, then
  GroupNorm-act-dropout-conv. The second conv starts at `init_scale` so the
  block starts near identity. A channel change uses a NIN shortcut.

  Attributes:
    nonlinearity: a key of ACTIVATIONS.
    out_ch: output channels (default: the input's).
    dropout: dropout rate, active only when train=True.
    skip_rescale: divide the residual sum by sqrt(2).
    init_scale: init scale of the last conv.
  """
  nonlinearity: str = 'swish'
  out_ch: Optional[int] = None
  dropout: float = 0.1
  skip_rescale: bool = False
  init_scale: float = 0.
  num_groups: int = 0   # GroupNorm groups; 0 = min(C // 4, 32) (see group_norm)

  @nn.compact
  def __call__(self, x: jax.Array, temb: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    """Args: x [B, H, W, C]; temb [B, E] or None. Returns: [B, H, W, out_ch]."""
    act = get_act(self.nonlinearity)
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = conv3x3(out_ch)(act(group_norm(c, self.num_groups)(x)))
    if temb is not None:
      h += dense(out_ch)(act(temb))[:, None, None, :]
    h = act(group_norm(out_ch, self.num_groups)(h))
    h = dropout(self.dropout, h, train)
    h = conv3x3(out_ch, init_scale=self.init_scale)(h)
    if c != out_ch:
      x = NIN(out_ch)(x)
    return skip_sum(x, h, self.skip_rescale)


class ResnetBlockBigGAN(nn.Module):
  """BigGAN's residual block (score_sde's ResnetBlockBigGANpp).

  Like ResnetBlockDDPM, but it can resample (up or down) both branches after
  the first activation, and its shortcut is a 1x1 conv whenever the channels
  change or it resamples.

  Attributes:
    nonlinearity: a key of ACTIVATIONS.
    up: 2x upsampling inside the block (nearest neighbour, or FIR).
    down: 2x downsampling inside the block (2x2 mean pool, or FIR).
    fir: resample with the FIR filter `fir_kernel`.
    fir_kernel: 1-D FIR kernel, e.g. (1, 3, 3, 1).
    out_ch: output channels (default: the input's).
    dropout: dropout rate, active only when train=True.
    skip_rescale: divide the residual sum by sqrt(2).
    init_scale: init scale of the last conv.
  """
  nonlinearity: str = 'swish'
  up: bool = False
  down: bool = False
  fir: bool = False
  fir_kernel: Sequence[float] = (1, 3, 3, 1)
  out_ch: Optional[int] = None
  dropout: float = 0.1
  skip_rescale: bool = True
  init_scale: float = 0.

  @nn.compact
  def __call__(self, x: jax.Array, temb: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    """Args: x [B, H, W, C]; temb [B, E] or None.

    Returns:
      [B, H', W', out_ch], with H' = 2H if up, H/2 if down, else H.
    """
    act = get_act(self.nonlinearity)
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = act(group_norm(c)(x))
    # Nearest-neighbour upsampling (up, not fir) is folded into the convolutions:
    # conv3x3(up(h)) without building up(h) (models/upsample_conv.py), and
    # conv1x1(up(x)) = up(conv1x1(x)) exactly, at a quarter of the FLOPs.
    nearest_up = self.up and not self.fir
    if self.up and self.fir:
      h, x = fir_ops.upsample_2d(h, self.fir_kernel), fir_ops.upsample_2d(x, self.fir_kernel)
    elif self.down:
      down = (functools.partial(fir_ops.downsample_2d, k=self.fir_kernel) if self.fir
              else naive_downsample)
      h, x = down(h), down(x)
    h = conv3x3(out_ch, upsample=nearest_up)(h)
    if temb is not None:
      h += dense(out_ch)(act(temb))[:, None, None, :]
    h = act(group_norm(out_ch)(h))
    h = dropout(self.dropout, h, train)
    h = conv3x3(out_ch, init_scale=self.init_scale)(h)
    if c != out_ch or self.up or self.down:
      x = conv1x1(out_ch)(x)
    if nearest_up:
      x = naive_upsample(x)
    return skip_sum(x, h, self.skip_rescale)
