"""Settings shared by the published experiments (score_sde's configs/), one function each.

Experiment files call `set_sde` and one architecture function, then change a
few fields. Architectures (Song et al. 2021, App. H; Ho et al. 2020):

- DDPM: nf 128, ch_mult (1, 2, 2, 2), 2 blocks, attention at 16.
- DDPM++: NCSN++'s U-Net without FIR or progressive growing, BigGAN blocks,
  skip rescaling, 4 blocks per level (8 when deep).
- NCSN++: DDPM++ with FIR resampling and a residual input pyramid
  (progressive_input='residual'), 4 blocks per level (8 when deep).

The time embedding follows the label: Fourier features of log sigma for
continuous VE training, sinusoidal embeddings of 999 t or of the discrete
index otherwise.
"""
import ml_collections


def set_sde(config: ml_collections.ConfigDict, sde: str, continuous: bool) -> None:
  """The SDE and what comes with it in score_sde's configs.

  VE: score_sde's reverse-diffusion + Langevin PC sampler, inputs in [0, 1],
  output divided by sigma, summed loss. VP / sub-VP: Euler-Maruyama (ancestral
  sampling for discrete DDPM), centred inputs, noise prediction, mean loss.
  """
  config.training.sde = sde
  config.training.continuous = continuous
  ve = sde == 'vesde'
  config.training.reduce_mean = not ve
  config.data.centered = not ve
  config.model.scale_by_sigma = ve
  config.model.embedding_type = 'fourier' if (ve and continuous) else 'positional'
  config.sampling.method = 'pc'
  if ve:
    config.sampling.predictor = 'reverse_diffusion'
    config.sampling.corrector = 'langevin'
    config.sampling.eps = 1e-5
  else:
    config.sampling.predictor = 'euler_maruyama' if continuous else 'ancestral_sampling'
    config.sampling.corrector = 'none'
    config.sampling.eps = 1e-3


def _unet_common(model: ml_collections.ConfigDict) -> None:
  model.normalization = 'GroupNorm'
  model.nonlinearity = 'swish'
  model.nf = 128
  model.ch_mult = (1, 2, 2, 2)
  model.attn_resolutions = (16,)
  model.resamp_with_conv = True
  model.conditional = True
  model.dropout = 0.1
  model.fir_kernel = (1, 3, 3, 1)
  model.progressive = 'none'
  model.progressive_combine = 'sum'
  model.attention_type = 'ddpm'
  model.init_scale = 0.
  model.fourier_scale = 16.
  model.conv_size = 3


def ddpm(config: ml_collections.ConfigDict) -> None:
  """Ho et al. 2020's CIFAR-10 U-Net as score_sde builds it (35,218,947 parameters; Ho et al.'s
  own, with attention after every up-path block at 16x16, is model.attn_every_up_block=True:
  35,746,307, the paper's 35.7M)."""
  model = config.model
  _unet_common(model)
  model.name = 'ddpm'
  model.num_res_blocks = 2
  model.fir = False
  model.progressive_input = 'none'
  model.skip_rescale = False
  model.resblock_type = 'ddpm'
  model.embedding_type = 'positional'
  model.ema_rate = 0.9999


def ddpmpp(config: ml_collections.ConfigDict, deep: bool = False) -> None:
  """DDPM++ (score_sde's *_ddpmpp_* configs)."""
  model = config.model
  _unet_common(model)
  model.name = 'ncsnpp'
  model.num_res_blocks = 8 if deep else 4
  model.fir = False
  model.progressive_input = 'none'
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.ema_rate = 0.9999


def ncsnpp(config: ml_collections.ConfigDict, deep: bool = False) -> None:
  """NCSN++ (score_sde's *_ncsnpp_* configs); EMA 0.999 for VE as score_sde."""
  model = config.model
  _unet_common(model)
  model.name = 'ncsnpp'
  model.num_res_blocks = 8 if deep else 4
  model.fir = True
  model.progressive_input = 'residual'
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.ema_rate = 0.999 if config.training.sde == 'vesde' else 0.9999


def ncsnpp_high_res(config: ml_collections.ConfigDict, size: int) -> None:
  """NCSN++ cont. (VE) for 256 and 1024 px (score_sde's celebahq/ffhq/lsun configs):
  output_skip / input_skip pyramids; 1024 px uses nf 16 and 8 levels."""
  ncsnpp(config)
  model = config.model
  model.progressive = 'output_skip'
  model.progressive_input = 'input_skip'
  model.dropout = 0.
  if size == 1024:
    model.nf = 16
    model.ch_mult = (1, 2, 4, 8, 16, 32, 32, 32)
    model.num_res_blocks = 1
    model.ema_rate = 0.9999
  else:
    model.nf = 128
    model.ch_mult = (1, 1, 2, 2, 2, 2, 2)
    model.num_res_blocks = 2
    model.ema_rate = 0.999


def refinenet(config: ml_collections.ConfigDict, name: str, nf: int = 128) -> None:
  """NCSN v1 ('ncsn') or NCSNv2 ('ncsnv2_*'): RefineNet, InstanceNorm++, ELU,
  SMLD (discrete VE) training, sampled by annealed Langevin dynamics."""
  config.training.sde = 'vesde'
  config.training.continuous = False
  config.training.reduce_mean = False
  config.data.centered = False
  model = config.model
  model.name = name
  model.nf = nf
  model.normalization = 'InstanceNorm++'
  model.nonlinearity = 'elu'
  model.dropout = 0.
  model.sigma_min = 0.01
  model.scale_by_sigma = name != 'ncsn'   # NCSNv2's technique 3; v1 predicts the score
  config.optim.warmup = 0
  config.optim.grad_clip = -1.
