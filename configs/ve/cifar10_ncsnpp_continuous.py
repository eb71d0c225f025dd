"""NCSN++ cont. (VE) on CIFAR-10, as in score_sde's configs/ve/cifar10_ncsnpp_continuous.py.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ve/cifar10_ncsnpp_continuous.py --workdir runs/c10_ve --mode train
"""
from configs.default_cifar10 import get_cifar10_configs


def get_config():
  config = get_cifar10_configs()
  config.training.sde = 'vesde'
  config.training.continuous = True
  config.sampling.method = 'pc'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.corrector = 'langevin'
  config.sampling.eps = 1e-5
  config.model.name = 'ncsnpp'
  config.model.scale_by_sigma = True
  config.model.ema_rate = 0.999
  config.model.normalization = 'GroupNorm'
  config.model.nonlinearity = 'swish'
  config.model.nf = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 4
  config.model.attn_resolutions = (16,)
  config.model.resamp_with_conv = True
  config.model.conditional = True
  config.model.fir = True
  config.model.fir_kernel = (1, 3, 3, 1)
  config.model.skip_rescale = True
  config.model.resblock_type = 'biggan'
  config.model.progressive = 'none'
  config.model.progressive_input = 'residual'
  config.model.progressive_combine = 'sum'
  config.model.attention_type = 'ddpm'
  config.model.init_scale = 0.
  config.model.fourier_scale = 16
  config.model.conv_size = 3
  config.model.embedding_type = 'fourier'
  return config
