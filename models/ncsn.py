"""NCSN v1 and NCSNv2: the RefineNet score networks of Song & Ermon 2019 / 2020.

- `ncsn` (NCSN v1, Song & Ermon 2019, App. A): a noise-conditional RefineNet
  with dilated convolutions, CondInstanceNorm++ and ELU, conditioned on the
  index i of the noise level sigma_i. ngf = model.nf, 128 (64 for MNIST-size
  data). Its output is the score itself (score_sde's ncsn configs:
  scale_by_sigma=False).
- `ncsnv2_64`, `ncsnv2_128`, `ncsnv2_256` (NCSNv2, Song & Ermon 2020): the
  same RefineNet without conditioning (InstanceNorm++, max-pool CRP), deeper
  for larger images. NCSNv2's technique 3 divides the output by sigma; here
  that division is `model.scale_by_sigma=True`, applied by
  `models.utils.get_score_fn` like every other output scaling, so the network
  is a bare function of x.

Stage layouts follow yang-song/score_sde's models/ncsnv2.py (NCSNv1, NCSNv2,
NCSNv2_128, NCSNv2_256); the parameter shapes are the same.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers
from models import utils as model_utils
from models.refinenet_layers import downsampling_factor, ncsn_conv, refine_net

# (channel multiplier, resample, dilation) per ResNet stage, and the refine
# blocks' channel multipliers from the deepest stage up.
_STAGES_64 = ((1, None, 1), (2, 'down', 1), (2, 'down', 2), (2, 'down', 4))
_REFINE_64 = (2, 2, 1, 1)
ARCHITECTURES = {
    'ncsn': (_STAGES_64, _REFINE_64),
    'ncsnv2_64': (_STAGES_64, _REFINE_64),
    'ncsnv2_128': (((1, None, 1), (2, 'down', 1), (2, 'down', 1), (4, 'down', 2), (4, 'down', 4)),
                   (4, 2, 2, 1, 1)),
    'ncsnv2_256': (((1, None, 1), (2, 'down', 1), (2, 'down', 1), (2, 'down', 1),
                    (4, 'down', 2), (4, 'down', 4)),
                   (4, 2, 2, 2, 1, 1)),
}


def _validate(config: ml_collections.ConfigDict, name: str, conditional: bool) -> None:
  """One-line ConfigErrors for configs this RefineNet cannot run."""
  model, data, training = config.model, config.data, config.training
  model_utils.check_parameterisation(config)
  layers.get_act(model.nonlinearity.lower())
  if model.normalization != 'InstanceNorm++':
    raise ConfigError(f"model.normalization={model.normalization!r} is not supported by "
                      f"model.name={name!r}; use 'InstanceNorm++'")
  if training.sde.lower() != 'vesde':
    raise ConfigError(f'model.name={name!r} is an SMLD score network; set training.sde=vesde')
  if conditional and training.continuous:
    raise ConfigError(f'model.name={name!r} is conditioned on the noise-level index; '
                      'set training.continuous=False')
  if not conditional and not model.scale_by_sigma:
    raise ConfigError(f'model.name={name!r} is unconditional: its output is divided by sigma '
                      '(NCSNv2 technique 3); set model.scale_by_sigma=True')
  factor = downsampling_factor(ARCHITECTURES[name][0])
  if data.image_size % factor:
    raise ConfigError(f'data.image_size={data.image_size} is not divisible by {factor}, '
                      f'the downsampling of model.name={name!r}; resize the data')


class RefineNetScore(nn.Module):
  """RefineNet score network: x [B, H, W, C], labels [B] -> [B, H, W, C].

  Attributes:
    arch: a key of ARCHITECTURES.
    nf: base channels (ngf).
    conditional: NCSN v1's CondInstanceNorm++ on the noise-level index.
    num_classes: number of noise levels L (model.num_scales).
    nonlinearity: 'elu' in the papers.
    num_channels: image channels C.
    image_size: H = W.
    centered: inputs already in [-1, 1]; otherwise x -> 2x - 1 first.
    instance_norm_unbiased, refine_align_corners: score_sde_pytorch's
      InstanceNorm++ variance and refine-block resize (model.* of the same names).
  """
  arch: str = 'ncsnv2_64'
  nf: int = 128
  conditional: bool = False
  num_classes: int = 10
  nonlinearity: str = 'elu'
  num_channels: int = 3
  image_size: int = 32
  centered: bool = False
  instance_norm_unbiased: bool = False
  refine_align_corners: bool = False

  @classmethod
  def _build(cls, config: ml_collections.ConfigDict, name: str,
             conditional: bool) -> 'RefineNetScore':
    _validate(config, name, conditional)
    return cls(arch=name, nf=config.model.nf, conditional=conditional,
               num_classes=config.model.num_scales,
               nonlinearity=config.model.nonlinearity.lower(),
               num_channels=config.data.num_channels, image_size=config.data.image_size,
               centered=config.data.centered,
               instance_norm_unbiased=config.model.get('instance_norm_unbiased', False),
               refine_align_corners=config.model.get('refine_align_corners', False))

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """Evaluates the network.

    Args:
      x: [B, H, W, C] noisy images.
      labels: [B] noise-level indices (float or int, 0..num_classes-1); only
        the conditional NCSN v1 reads them.
      train: unused (no dropout); kept for the common model signature.

    Returns:
      [B, H, W, C], same dtype as x.
    """
    del train
    if x.shape[1:] != (self.image_size, self.image_size, self.num_channels):
      raise ConfigError(f'{self.arch} input has shape {x.shape[1:]} but data.image_size='
                        f'{self.image_size}, data.num_channels={self.num_channels}; make '
                        'the config match the data')
    y = None
    if self.conditional:
      y = jnp.broadcast_to(jnp.round(jnp.asarray(labels)).astype(jnp.int32), x.shape[:1])
    h = x if self.centered else 2 * x - 1.
    stages, refine_mults = ARCHITECTURES[self.arch]
    h = refine_net(h, y, nf=self.nf, stages=stages, refine_mults=refine_mults,
                   nonlinearity=self.nonlinearity, conditional=self.conditional,
                   num_classes=self.num_classes, unbiased=self.instance_norm_unbiased,
                   align_corners=self.refine_align_corners)
    return ncsn_conv(self.num_channels)(h).astype(x.dtype)


def _tiny(name: str, image_size: int) -> dict:
  return {
      'model.name': name, 'model.nf': 8, 'model.num_scales': 10,
      'model.normalization': 'InstanceNorm++', 'model.nonlinearity': 'elu',
      'model.scale_by_sigma': name != 'ncsn', 'model.sigma_max': 1., 'model.sigma_min': 0.01,
      'training.sde': 'vesde', 'training.continuous': False,
      'data.image_size': image_size, 'data.num_channels': 1,
  }


class NCSN(RefineNetScore):
  """NCSN v1 (`ncsn`): the noise-conditional RefineNet."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NCSN':
    """Raises ConfigError unless VE, discrete, InstanceNorm++ and a fitting size."""
    return cls._build(config, 'ncsn', conditional=True)

  @staticmethod
  def tiny_config_overrides() -> dict:
    """`group.field` overrides for a tiny NCSN v1 on 8x8x1 images, L = 10."""
    return _tiny('ncsn', 8)


class NCSNv2_64(RefineNetScore):  # noqa: N801 (score_sde's names)
  """NCSNv2 for images below 96 px (`ncsnv2_64`): unconditional, output / sigma."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NCSNv2_64':
    return cls._build(config, 'ncsnv2_64', conditional=False)

  @staticmethod
  def tiny_config_overrides() -> dict:
    return _tiny('ncsnv2_64', 8)


class NCSNv2_128(RefineNetScore):  # noqa: N801
  """NCSNv2 for 96-128 px (`ncsnv2_128`): one more downsampling stage."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NCSNv2_128':
    return cls._build(config, 'ncsnv2_128', conditional=False)

  @staticmethod
  def tiny_config_overrides() -> dict:
    return _tiny('ncsnv2_128', 8)


class NCSNv2_256(RefineNetScore):  # noqa: N801
  """NCSNv2 for 129-256 px (`ncsnv2_256`): two more downsampling stages."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NCSNv2_256':
    return cls._build(config, 'ncsnv2_256', conditional=False)

  @staticmethod
  def tiny_config_overrides() -> dict:
    return _tiny('ncsnv2_256', 16)
