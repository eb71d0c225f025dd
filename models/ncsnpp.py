"""NCSN++ / DDPM++: the U-Net of Song et al. 2021 (score SDEs), App. H.

The structure follows yang-song/score_sde's models/ncsnpp.py in all its
options: FIR or nearest/mean-pool resampling, DDPM or BigGAN residual blocks,
progressive growing of the output (none | output_skip | residual) and of the
input (none | input_skip | residual, combined by sum | cat). For the same config
it has the same parameters, with the same names except for the block classes
(score_sde's ResnetBlockBigGANpp, ResnetBlockDDPMpp, AttnBlockpp). DDPM++
(score_sde's *_ddpmpp_* configs) is this network with fir=False and no
progressive growing; NCSN++ turns on FIR and progressive growing (App. H).

The network is a bare function of (x, noise label). It does not know about
SDEs: the caller computes the label (log sigma for Fourier features, 999 * t
or a discrete index for positional ones) and does any scaling by sigma.
"""
import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers
from models import utils as model_utils

EMBEDDING_TYPES = ('fourier', 'positional')
RESBLOCK_TYPES = ('ddpm', 'biggan')
PROGRESSIVE = ('none', 'output_skip', 'residual')
PROGRESSIVE_INPUT = ('none', 'input_skip', 'residual')
PROGRESSIVE_COMBINE = ('sum', 'cat')


def tiny_config_overrides() -> dict:
  """`config.<group>.<field>` overrides for a tiny NCSN++ that runs fast on CPU.

  Two levels (8x8 and 4x4), attention at 4x4, one block per level.
  """
  return {
      'model.name': 'ncsnpp',
      'model.nf': 8,
      'model.ch_mult': (1, 2),
      'model.num_res_blocks': 1,
      'model.attn_resolutions': (4,),
      'model.dropout': 0.1,
      'data.image_size': 8,
      'data.num_channels': 1,
  }


def validate_unet(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError, one line naming the field and the fix, for bad values."""
  model, data = config.model, config.data
  if model.embedding_type.lower() not in EMBEDDING_TYPES:
    raise ConfigError(
        f'model.embedding_type={model.embedding_type!r} is unknown; '
        f'use one of {", ".join(EMBEDDING_TYPES)}')
  if model.resblock_type.lower() not in RESBLOCK_TYPES:
    raise ConfigError(
        f'model.resblock_type={model.resblock_type!r} is unknown; '
        f'use one of {", ".join(RESBLOCK_TYPES)}')
  layers.get_act(model.nonlinearity.lower())  # ConfigError if unknown.
  for field, valid in (('progressive', PROGRESSIVE), ('progressive_input', PROGRESSIVE_INPUT),
                       ('progressive_combine', PROGRESSIVE_COMBINE)):
    if model[field].lower() not in valid:
      raise ConfigError(f'model.{field}={model[field]!r} is unknown; use one of '
                        f'{", ".join(valid)}')
  if model.fir and len(model.fir_kernel) < 2:
    raise ConfigError(f'model.fir_kernel={tuple(model.fir_kernel)} needs at least 2 taps, '
                      'e.g. (1, 3, 3, 1)')
  if model.embedding_type.lower() == 'fourier' and not config.training.continuous:
    raise ConfigError("model.embedding_type='fourier' embeds continuous log-sigma labels; "
                      "with training.continuous=False use 'positional'")
  model_utils.check_parameterisation(config)
  if model.attention_type.lower() != 'ddpm':
    raise ConfigError(f'model.attention_type={model.attention_type!r} is '
                      "unknown; use 'ddpm'")
  if model.normalization != 'GroupNorm':
    raise ConfigError(f'model.normalization={model.normalization!r} is not '
                      "supported by ncsnpp; use 'GroupNorm'")
  if model.conv_size != 3:
    raise ConfigError(f'model.conv_size={model.conv_size} is not supported by '
                      'ncsnpp; use 3')
  num_levels = len(model.ch_mult)
  if num_levels < 1:
    raise ConfigError('model.ch_mult is empty; give one multiplier per level, '
                      'e.g. (1, 2, 2, 2)')
  factor = 2 ** (num_levels - 1)
  if data.image_size % factor != 0:
    raise ConfigError(
        f'data.image_size={data.image_size} is not divisible by '
        f'2**(len(model.ch_mult)-1)={factor}; change the image size or use '
        'fewer levels in model.ch_mult')
  reached = [data.image_size // 2 ** i for i in range(num_levels)]
  for res in model.attn_resolutions:
    if res not in reached:
      raise ConfigError(
          f'model.attn_resolutions contains {res}, a resolution the network '
          f'never reaches; use values from {tuple(reached)}')


class NCSNpp(nn.Module):
  """The NCSN++/DDPM++ U-Net: x [B, H, W, C] and labels [B] -> [B, H, W, C].

  Attributes:
    nf: base channel count.
    ch_mult: channel multiplier per level; the resolution halves between levels.
    num_res_blocks: residual blocks per level on the way down (one more up).
    attn_resolutions: resolutions (in pixels) that get self-attention.
    dropout: dropout rate inside residual blocks, used when train=True.
    embedding_type: 'fourier' (Gaussian Fourier features of the label, for
      continuous log-sigma labels) or 'positional' (DDPM's sinusoidal one).
    fourier_scale: standard deviation of the Fourier frequencies.
    conditional: whether blocks see the noise label at all.
    resblock_type: 'ddpm' (separate resampling layers) or 'biggan'
      (resampling inside residual blocks).
    skip_rescale: divide residual sums by sqrt(2).
    init_scale: init scale of each residual branch's last layer and of the
      output conv (0 makes them start at ~0, as score_sde).
    resamp_with_conv: 'ddpm' resampling layers carry a 3x3 conv.
    fir: resample with the FIR filter `fir_kernel` (StyleGAN2's upfirdn2d)
      instead of nearest-neighbour / mean pooling.
    fir_kernel: 1-D FIR kernel, e.g. (1, 3, 3, 1).
    progressive: output pyramid: 'none'; 'output_skip' (each level adds an
      RGB-like output to the upsampled one from the level below, as
      StyleGAN2's skip generator); 'residual' (the upsampled pyramid is a
      residual added to the main path).
    progressive_input: input pyramid: 'none'; 'input_skip' (the downsampled
      image is merged by `progressive_combine` after each downsampling);
      'residual' (a conv-downsampled pyramid added to the main path).
    progressive_combine: 'sum' or 'cat', for progressive_input='input_skip'.
    nonlinearity: 'swish', 'elu', 'relu' or 'lrelu'.
    num_channels: C, the image channels (input and output).
    image_size: H = W.
    centered: the input is already in [-1, 1]; when False the network maps
      [0, 1] inputs by 2x - 1 first (score_sde's convention, the counterpart of
      its data scaler, which centres only when data.centered is True).
  """
  nf: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  embedding_type: str = 'positional'
  fourier_scale: float = 16.
  conditional: bool = True
  resblock_type: str = 'biggan'
  skip_rescale: bool = True
  init_scale: float = 0.
  resamp_with_conv: bool = True
  fir: bool = False
  fir_kernel: Sequence[float] = (1, 3, 3, 1)
  progressive: str = 'none'
  progressive_input: str = 'none'
  progressive_combine: str = 'sum'
  nonlinearity: str = 'swish'
  num_channels: int = 3
  image_size: int = 32
  centered: bool = True

  tiny_config_overrides = staticmethod(tiny_config_overrides)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NCSNpp':
    """Builds the network from `config.model.*` and `config.data.*`.

    Raises:
      ConfigError: a field has an unknown or inconsistent value.
    """
    validate_unet(config)
    model, data = config.model, config.data
    return cls(
        nf=model.nf,
        ch_mult=tuple(model.ch_mult),
        num_res_blocks=model.num_res_blocks,
        attn_resolutions=tuple(model.attn_resolutions),
        dropout=model.dropout,
        embedding_type=model.embedding_type.lower(),
        fourier_scale=model.fourier_scale,
        conditional=model.conditional,
        resblock_type=model.resblock_type.lower(),
        skip_rescale=model.skip_rescale,
        init_scale=model.init_scale,
        resamp_with_conv=model.resamp_with_conv,
        fir=model.fir,
        fir_kernel=tuple(model.fir_kernel),
        progressive=model.progressive.lower(),
        progressive_input=model.progressive_input.lower(),
        progressive_combine=model.progressive_combine.lower(),
        nonlinearity=model.nonlinearity.lower(),
        num_channels=data.num_channels,
        image_size=data.image_size,
        centered=data.centered,
    )

  def _embed(self, labels: jax.Array) -> Optional[jax.Array]:
    """Noise-label embedding [B, 4 * nf], or None when not conditional."""
    if not self.conditional:
      return None
    if self.embedding_type == 'fourier':
      temb = layers.GaussianFourierProjection(
          embedding_size=self.nf, scale=self.fourier_scale)(labels)
    else:
      temb = layers.get_timestep_embedding(labels, self.nf)
    act = layers.get_act(self.nonlinearity)
    temb = layers.dense(self.nf * 4)(temb)
    return layers.dense(self.nf * 4)(act(temb))

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array,
               train: bool = False) -> jax.Array:
    """Evaluates the network.

    Args:
      x: [B, H, W, C] images (noisy), H = W = image_size, C = num_channels.
      labels: [B] float noise labels (or a scalar, broadcast to [B]).
      train: enables dropout, which then needs the 'dropout' rng.

    Returns:
      [B, H, W, C], same dtype as x.
    """
    if x.shape[1:] != (self.image_size, self.image_size, self.num_channels):
      raise ConfigError(
          f'ncsnpp input has shape {x.shape[1:]} but data.image_size='
          f'{self.image_size}, data.num_channels={self.num_channels}; make '
          'the config match the data')
    labels = jnp.broadcast_to(jnp.asarray(labels, jnp.float32), x.shape[:1])
    act = layers.get_act(self.nonlinearity)
    temb = self._embed(labels)

    resblock_cls = {'ddpm': layers.ResnetBlockDDPM,
                    'biggan': functools.partial(layers.ResnetBlockBigGAN, fir=self.fir,
                                                fir_kernel=self.fir_kernel)}[self.resblock_type]
    resblock = functools.partial(
        resblock_cls, nonlinearity=self.nonlinearity, dropout=self.dropout,
        skip_rescale=self.skip_rescale, init_scale=self.init_scale)
    attn = functools.partial(layers.AttnBlock, skip_rescale=self.skip_rescale,
                             init_scale=self.init_scale)
    resample = dict(with_conv=self.resamp_with_conv, fir=self.fir, fir_kernel=self.fir_kernel)
    pyramid_fir = dict(fir=self.fir, fir_kernel=self.fir_kernel)
    skip = functools.partial(layers.skip_sum, skip_rescale=self.skip_rescale)
    num_levels = len(self.ch_mult)

    if not self.centered:
      x = 2 * x - 1.
    input_pyramid = x

    # Downsampling path. `hs` keeps every block's output for the skips.
    hs = [layers.conv3x3(self.nf)(x)]
    for level in range(num_levels):
      for _ in range(self.num_res_blocks):
        h = resblock(out_ch=self.nf * self.ch_mult[level])(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn()(h)
        hs.append(h)
      if level != num_levels - 1:
        if self.resblock_type == 'ddpm':
          h = layers.Downsample(**resample)(hs[-1])
        else:
          h = resblock(down=True)(hs[-1], temb, train)
        if self.progressive_input == 'input_skip':
          input_pyramid = layers.Downsample(with_conv=False, **pyramid_fir)(input_pyramid)
          h = layers.Combine(method=self.progressive_combine)(input_pyramid, h)
        elif self.progressive_input == 'residual':
          input_pyramid = layers.Downsample(out_ch=h.shape[-1], with_conv=True,
                                            **pyramid_fir)(input_pyramid)
          h = input_pyramid = skip(input_pyramid, h)
        hs.append(h)

    # Middle: ResBlock-Attn-ResBlock at the lowest resolution.
    h = hs[-1]
    h = resblock()(h, temb, train)
    h = attn()(h)
    h = resblock()(h, temb, train)

    # Upsampling path: num_res_blocks + 1 blocks per level, one per skip, so
    # that every entry of `hs` is consumed exactly once.
    pyramid = None
    for level in reversed(range(num_levels)):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = resblock(out_ch=self.nf * self.ch_mult[level])(h, temb, train)
      if h.shape[1] in self.attn_resolutions:
        h = attn()(h)

      if self.progressive != 'none':
        if level == num_levels - 1:
          # The coarsest level starts the output pyramid.
          pyramid = act(layers.group_norm(h.shape[-1])(h))
          if self.progressive == 'output_skip':
            pyramid = layers.conv3x3(self.num_channels, init_scale=self.init_scale)(pyramid)
          else:
            pyramid = layers.conv3x3(h.shape[-1])(pyramid)
        elif self.progressive == 'output_skip':
          pyramid = layers.Upsample(with_conv=False, **pyramid_fir)(pyramid)
          pyramid_h = act(layers.group_norm(h.shape[-1])(h))
          pyramid_h = layers.conv3x3(self.num_channels, init_scale=self.init_scale)(pyramid_h)
          pyramid = pyramid + pyramid_h
        else:
          pyramid = layers.Upsample(out_ch=h.shape[-1], with_conv=True, **pyramid_fir)(pyramid)
          h = pyramid = skip(pyramid, h)

      if level != 0:
        if self.resblock_type == 'ddpm':
          h = layers.Upsample(**resample)(h)
        else:
          h = resblock(up=True)(h, temb, train)
    assert not hs, len(hs)

    if self.progressive == 'output_skip':
      h = pyramid
    else:
      h = act(layers.group_norm(h.shape[-1])(h))
      h = layers.conv3x3(self.num_channels, init_scale=self.init_scale)(h)
    return h.astype(x.dtype)
