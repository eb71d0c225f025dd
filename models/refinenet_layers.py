"""RefineNet building blocks of NCSN v1 and NCSNv2 (Song & Ermon 2019, App. A).

The blocks follow RefineNet (Lin et al. 2017) as adapted by ermongroup/ncsn and
ermongroup/ncsnv2, with the layer structure (and so the parameter shapes) of
yang-song/score_sde's JAX port (models/layers.py). Every block has a noise-
conditional form (NCSN v1: CondInstanceNorm++ before each conv of the RCU, CRP
and MSF blocks, average pooling in CRP) and an unconditional one (NCSNv2: no
normalisation inside the refine blocks, max pooling in CRP); `conditional`
switches between them, and `y` ([B] int noise-level indices) is ignored when
it is False.

Arrays are NHWC: [B, H, W, C].
"""
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers, weight_grad
from models.normalization import CondInstanceNormPlus, InstanceNormPlus
from models.pooling import separable_pool


def _pytorch_uniform(fan_in_scale: float = 1.):
  """PyTorch's default conv init, which NCSN keeps: U(+-1/sqrt(fan_in))."""
  return jax.nn.initializers.variance_scaling(fan_in_scale / 3., 'fan_in', 'uniform')


def ncsn_conv(features: int, kernel: int = 3, dilation: int = 1,
              bias: bool = True) -> nn.Conv:
  """NCSN's 'SAME' convolution (3x3 by default), optionally dilated.

  Undilated ones take weight_grad's weight gradient on XLA:CPU (models/weight_grad.py),
  dilated ones are plain lax convolutions.
  """
  return nn.Conv(features, (kernel, kernel), padding='SAME',
                 kernel_dilation=(dilation, dilation), use_bias=bias,
                 kernel_init=_pytorch_uniform(),
                 bias_init=jax.nn.initializers.zeros,
                 conv_general_dilated=weight_grad.conv_general_dilated)


def mean_pool(x: jax.Array) -> jax.Array:
  """2x2 mean pooling: [B, H, W, C] -> [B, H/2, W/2, C]."""
  return layers.naive_downsample(x)


def resize_align_corners(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Bilinear resize with corner pixels aligned (torch's align_corners=True).

  Output pixel i samples input coordinate i (n_in - 1) / (n_out - 1), so the
  corners map onto each other; done as one interpolation matrix per axis.

  Args:
    x: [B, H, W, C]. shape: output (H', W').
  Returns:
    [B, H', W', C].
  """
  def weights(n_in, n_out):
    pos = jnp.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.)
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, n_in - 1)
    hi = jnp.minimum(lo + 1, n_in - 1)
    frac = (pos - lo)[:, None]
    eye = jnp.eye(n_in, dtype=x.dtype)
    return (1. - frac) * eye[lo] + frac * eye[hi]   # [n_out, n_in]

  wh, ww = weights(x.shape[1], shape[0]), weights(x.shape[2], shape[1])
  return jnp.einsum('ih,jw,bhwc->bijc', wh, ww, x)


class Norm(nn.Module):
  """CondInstanceNorm++ when conditional, InstanceNorm++ otherwise."""
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False   # score_sde_pytorch's variance of the channel means

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array]) -> jax.Array:
    """Args: x [B, H, W, C]; y [B] int or None. Returns: [B, H, W, C]."""
    if self.conditional:
      return CondInstanceNormPlus(self.num_classes, unbiased=self.unbiased)(x, y)
    return InstanceNormPlus(unbiased=self.unbiased)(x)


class ResidualBlock(nn.Module):
  """The ResNet backbone block (NCSN's ConditionalResidualBlock / ResidualBlock).

  norm-act-conv-norm-act-conv plus a shortcut. With resample='down' and
  dilation 1 the second conv and the shortcut are followed by 2x2 mean pooling
  (ConvMeanPool); with a dilation > 1 the block keeps the resolution and uses
  dilated 3x3 convolutions instead (Song & Ermon 2019, App. A: dilation
  replaces subsampling in the deeper stages).

  Attributes:
    output_dim: output channels.
    resample: None or 'down'.
    dilation: dilation of the 3x3 convs.
    nonlinearity: a key of layers.ACTIVATIONS (NCSN uses 'elu').
    conditional: CondInstanceNorm++ on the noise level (NCSN v1).
    num_classes: noise levels L, for the conditional norm.
  """
  output_dim: int
  resample: Optional[str] = None
  dilation: int = 1
  nonlinearity: str = 'elu'
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
    """Args: x [B, H, W, C]; y [B] int. Returns: [B, H', W', output_dim]."""
    act = layers.get_act(self.nonlinearity)
    norm = lambda: Norm(self.conditional, self.num_classes, self.unbiased)  # noqa: E731
    c, out, dil = x.shape[-1], self.output_dim, self.dilation
    h = act(norm()(x, y))
    if self.resample == 'down':
      h = ncsn_conv(c, dilation=dil)(h)
      h = act(norm()(h, y))
      if dil > 1:
        h = ncsn_conv(out, dilation=dil)(h)
        shortcut = ncsn_conv(out, dilation=dil)(x)
      else:
        h = mean_pool(ncsn_conv(out)(h))
        shortcut = mean_pool(ncsn_conv(out, kernel=1)(x))
    else:
      h = ncsn_conv(out, dilation=dil)(h)
      h = act(norm()(h, y))
      h = ncsn_conv(out, dilation=dil)(h)
      if out == c:
        shortcut = x
      else:
        shortcut = ncsn_conv(out, kernel=3 if dil > 1 else 1, dilation=dil)(x)
    return layers.skip_sum(shortcut, h, skip_rescale=False)


class RCUBlock(nn.Module):
  """Residual conv units: n_blocks x (n_stages x [norm]-act-conv) + skip."""
  features: int
  n_blocks: int
  n_stages: int
  nonlinearity: str = 'elu'
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
    act = layers.get_act(self.nonlinearity)
    for _ in range(self.n_blocks):
      residual = x
      for _ in range(self.n_stages):
        if self.conditional:
          x = Norm(True, self.num_classes, self.unbiased)(x, y)
        x = ncsn_conv(self.features, bias=False)(act(x))
      x = layers.skip_sum(residual, x, skip_rescale=False)
    return x


def pool_5x5(pool: Callable, x: jax.Array) -> jax.Array:
  """CRP's 5x5, stride-1 'SAME' pool (nn.max_pool or nn.avg_pool), in two 1-D passes.

  The mean counts the padding, as torch's AvgPool2d does. models/pooling.py says why
  two passes, and what they change (nothing in the value of the max).
  """
  return separable_pool(pool, x, (5, 5), padding='SAME')


class CRPBlock(nn.Module):
  """Chained residual pooling: n_stages x ([norm]-pool5x5-conv), summed.

  NCSNv2 max-pools; NCSN v1 (conditional) normalises and average-pools.
  """
  features: int
  n_stages: int = 2
  nonlinearity: str = 'elu'
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
    x = layers.get_act(self.nonlinearity)(x)
    path = x
    for _ in range(self.n_stages):
      if self.conditional:
        path = pool_5x5(nn.avg_pool, Norm(True, self.num_classes, self.unbiased)(path, y))
      else:
        path = pool_5x5(nn.max_pool, path)
      path = ncsn_conv(self.features, bias=False)(path)
      x = layers.skip_sum(x, path, skip_rescale=False)
    return x


class MSFBlock(nn.Module):
  """Multi-resolution fusion: [norm]-conv each input, resize bilinearly, sum.

  align_corners: score_sde_pytorch's `F.interpolate(..., align_corners=True)`;
  score_sde's JAX (and the default) resizes with half-pixel centres.
  """
  shape: Sequence[int]
  features: int
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False
  align_corners: bool = False

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], y: Optional[jax.Array] = None) -> jax.Array:
    total = 0.
    for x in xs:
      if self.conditional:
        x = Norm(True, self.num_classes, self.unbiased)(x, y)
      h = ncsn_conv(self.features)(x)
      if self.align_corners:
        h = resize_align_corners(h, self.shape)
      else:
        h = jax.image.resize(h, (h.shape[0], *self.shape, h.shape[-1]), 'bilinear')
      total = total + h
    return total


class RefineBlock(nn.Module):
  """RefineNet's refine block: RCU per input, MSF (unless start), CRP, RCU.

  Attributes:
    shape: output (H, W), the resolution of the skip input.
    features: output channels.
    start: only one input (the deepest stage): no fusion.
    end: the last block: three output RCUs instead of one.
    nonlinearity, conditional, num_classes, unbiased: as ResidualBlock.
    align_corners: as MSFBlock.
  """
  shape: Sequence[int]
  features: int
  start: bool = False
  end: bool = False
  nonlinearity: str = 'elu'
  conditional: bool = False
  num_classes: int = 10
  unbiased: bool = False
  align_corners: bool = False

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], y: Optional[jax.Array] = None) -> jax.Array:
    """Args: xs list of [B, H_i, W_i, C_i]; y [B] int. Returns: [B, *shape, features]."""
    common = dict(nonlinearity=self.nonlinearity, conditional=self.conditional,
                  num_classes=self.num_classes, unbiased=self.unbiased)
    hs = [RCUBlock(x.shape[-1], n_blocks=2, n_stages=2, **common)(x, y) for x in xs]
    if self.start:
      h = hs[0]
    else:
      h = MSFBlock(self.shape, self.features, conditional=self.conditional,
                   num_classes=self.num_classes, unbiased=self.unbiased,
                   align_corners=self.align_corners)(hs, y)
    h = CRPBlock(self.features, 2, **common)(h, y)
    return RCUBlock(self.features, n_blocks=3 if self.end else 1, n_stages=2, **common)(h, y)


def downsampling_factor(stages: Sequence[tuple]) -> int:
  """How much a backbone spec shrinks the image: 2 per undilated 'down' stage."""
  factor = 1
  for _, resample, dilation in stages:
    if resample == 'down' and dilation == 1:
      factor *= 2
  return factor


def refine_net(x: jax.Array, y: Optional[jax.Array], *, nf: int, stages: Sequence[tuple],
               refine_mults: Sequence[int], nonlinearity: str, conditional: bool,
               num_classes: int, unbiased: bool = False,
               align_corners: bool = False) -> jax.Array:
  """The RefineNet body, called inside a compact module: begin conv, ResNet
  stages, refine blocks from the deepest stage up, final norm-act.

  Args:
    x: [B, H, W, C] input (already centred).
    y: [B] int noise-level indices (conditional) or None.
    nf: base channels.
    stages: per stage (channel multiplier, None | 'down', dilation); each stage
      is a (possibly resampling) block followed by a plain block.
    refine_mults: channel multiplier of each refine block, deepest first.
    nonlinearity, conditional, num_classes, unbiased: as ResidualBlock.
    align_corners: as MSFBlock.

  Returns:
    [B, H, W, nf] features before the output conv.
  """
  assert len(refine_mults) == len(stages), (stages, refine_mults)
  common = dict(nonlinearity=nonlinearity, conditional=conditional, num_classes=num_classes,
                unbiased=unbiased)
  h = ncsn_conv(nf)(x)
  skips = []
  for mult, resample, dilation in stages:
    h = ResidualBlock(mult * nf, resample, dilation, **common)(h, y)
    h = ResidualBlock(mult * nf, None, dilation, **common)(h, y)
    skips.append(h)
  ref = None
  for i, (skip, mult) in enumerate(zip(reversed(skips), refine_mults)):
    inputs = [skip] if ref is None else [skip, ref]
    ref = RefineBlock(skip.shape[1:3], mult * nf, start=i == 0, end=i == len(skips) - 1,
                      align_corners=align_corners, **common)(inputs, y)
  h = Norm(conditional, num_classes, unbiased)(ref, y)
  return layers.get_act(nonlinearity)(h)
