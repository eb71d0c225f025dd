"""DDPM++ cont. (VP) on CIFAR-10, as in score_sde's configs/vp/cifar10_ddpmpp_continuous.py.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/vp/cifar10_ddpmpp_continuous.py --workdir runs/c10_vp --mode train
"""
from configs.default_cifar10 import get_cifar10_configs


def get_config():
  config = get_cifar10_configs()
  config.training.sde = 'vpsde'
  config.training.continuous = True
  config.training.reduce_mean = True
  config.sampling.method = 'pc'
  config.sampling.predictor = 'euler_maruyama'
  config.sampling.corrector = 'none'
  config.data.centered = True
  config.model.name = 'ncsnpp'
  config.model.scale_by_sigma = False
  config.model.ema_rate = 0.9999
  config.model.normalization = 'GroupNorm'
  config.model.nonlinearity = 'swish'
  config.model.nf = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 4
  config.model.attn_resolutions = (16,)
  config.model.resamp_with_conv = True
  config.model.conditional = True
  config.model.fir = False
  config.model.skip_rescale = True
  config.model.resblock_type = 'biggan'
  config.model.progressive = 'none'
  config.model.progressive_input = 'none'
  config.model.progressive_combine = 'sum'
  config.model.attention_type = 'ddpm'
  config.model.init_scale = 0.
  config.model.embedding_type = 'positional'
  config.model.conv_size = 3
  return config
