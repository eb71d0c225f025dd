"""DDPM's U-Net (Ho et al. 2020, App. B; score_sde's models/ddpm.py).

A Wide-ResNet U-Net with GroupNorm, sinusoidal (positional) time embedding,
DDPM residual blocks (NIN shortcut, no skip rescaling, zero-initialised last
conv), conv resampling and self-attention at the `attn_resolutions`: after
every residual block on the way down, once per level (after its blocks) on the
way up, as score_sde's models/ddpm.py, the reference for the score-SDE configs:
35,218,947 parameters for CIFAR-10 (nf 128, ch_mult (1, 2, 2, 2), 2 blocks,
attention at 16), equal to score_sde_pytorch's. `attn_every_up_block=True`
attends after every up-path block too, as Ho et al.'s own diffusion_tf
unet.py: two attention blocks more on CIFAR-10, 35,746,307 parameters, the
paper's 35.7M.
"""
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers
from models import ncsnpp


def tiny_config_overrides() -> dict:
  """`group.field` overrides for a tiny DDPM on 8x8x1 images."""
  # nf = 8 has fewer channels than the references' 32 groups: min(C // 4, 32) instead.
  return {**ncsnpp.tiny_config_overrides(), 'model.name': 'ddpm', 'model.ddpm_num_groups': 0}


class DDPM(nn.Module):
  """DDPM's U-Net: x [B, H, W, C] and labels [B] -> [B, H, W, C].

  Attributes: as NCSNpp's namesakes (nf, ch_mult, num_res_blocks,
  attn_resolutions, dropout, conditional, resamp_with_conv, nonlinearity,
  num_channels, image_size, centered); attn_every_up_block: Ho et al.'s
  placement of up-path attention (see the module docstring).
  """
  nf: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  conditional: bool = True
  resamp_with_conv: bool = True
  nonlinearity: str = 'swish'
  num_channels: int = 3
  image_size: int = 32
  centered: bool = True
  attn_every_up_block: bool = False
  num_groups: int = 32

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'DDPM':
    """Builds DDPM from `config.model.*` and `config.data.*`.

    Raises:
      ConfigError: a bad value, or an NCSN++-only option (FIR, progressive
        growing, Fourier features) that DDPM does not have.
    """
    model, data = config.model, config.data
    ncsnpp.validate_unet(config)
    if (model.fir or model.progressive.lower() != 'none'
        or model.progressive_input.lower() != 'none' or model.embedding_type != 'positional'):
      raise ConfigError("model.name='ddpm' has no FIR, progressive growing or Fourier "
                        "features; set model.fir=False, model.progressive='none', "
                        "model.progressive_input='none', model.embedding_type='positional' "
                        "(or use model.name='ncsnpp')")
    groups = model.get('ddpm_num_groups', 32)
    channels = sorted({model.nf} | {model.nf * m for m in model.ch_mult})
    if groups < 0 or (groups and any(ch % groups for ch in channels)):
      raise ConfigError(f'model.ddpm_num_groups={groups} does not divide the channel counts '
                        f'{channels} of model.nf={model.nf}, model.ch_mult='
                        f'{tuple(model.ch_mult)}; use a divisor, or 0 for min(C // 4, 32)')
    return cls(nf=model.nf, ch_mult=tuple(model.ch_mult), num_res_blocks=model.num_res_blocks,
               attn_resolutions=tuple(model.attn_resolutions), dropout=model.dropout,
               conditional=model.conditional, resamp_with_conv=model.resamp_with_conv,
               nonlinearity=model.nonlinearity.lower(), num_channels=data.num_channels,
               image_size=data.image_size, centered=data.centered,
               attn_every_up_block=model.attn_every_up_block, num_groups=groups)

  tiny_config_overrides = staticmethod(tiny_config_overrides)

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """Args: x [B, H, W, C]; labels [B] (999 t or a discrete index); train
    enables dropout ('dropout' rng). Returns: [B, H, W, C], x's dtype."""
    if x.shape[1:] != (self.image_size, self.image_size, self.num_channels):
      raise ConfigError(f'ddpm input has shape {x.shape[1:]} but data.image_size='
                        f'{self.image_size}, data.num_channels={self.num_channels}; make '
                        'the config match the data')
    act = layers.get_act(self.nonlinearity)
    temb = None
    if self.conditional:
      labels = jnp.broadcast_to(jnp.asarray(labels, jnp.float32), x.shape[:1])
      temb = layers.get_timestep_embedding(labels, self.nf)
      temb = layers.dense(self.nf * 4)(temb)
      temb = layers.dense(self.nf * 4)(act(temb))
    resblock = functools.partial(layers.ResnetBlockDDPM, nonlinearity=self.nonlinearity,
                                 dropout=self.dropout, skip_rescale=False, init_scale=0.,
                                 num_groups=self.num_groups)
    attn = functools.partial(layers.AttnBlock, skip_rescale=False, init_scale=0.,
                             num_groups=self.num_groups)
    num_levels = len(self.ch_mult)
    h = x if self.centered else 2 * x - 1.

    hs = [layers.conv3x3(self.nf)(h)]
    for level in range(num_levels):
      for _ in range(self.num_res_blocks):
        h = resblock(out_ch=self.nf * self.ch_mult[level])(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn()(h)
        hs.append(h)
      if level != num_levels - 1:
        hs.append(layers.Downsample(with_conv=self.resamp_with_conv)(hs[-1]))

    h = resblock()(hs[-1], temb, train)
    h = attn()(h)
    h = resblock()(h, temb, train)

    for level in reversed(range(num_levels)):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = resblock(out_ch=self.nf * self.ch_mult[level])(h, temb, train)
        if self.attn_every_up_block and h.shape[1] in self.attn_resolutions:
          h = attn()(h)
      if not self.attn_every_up_block and h.shape[1] in self.attn_resolutions:
        h = attn()(h)
      if level != 0:
        h = layers.Upsample(with_conv=self.resamp_with_conv)(h)
    assert not hs, len(hs)

    h = act(layers.group_norm(h.shape[-1], self.num_groups)(h))
    h = layers.conv3x3(self.num_channels, init_scale=0.)(h)
    return h.astype(x.dtype)
