"""NCSNv2 (Song & Ermon 2020) on LSUN bedroom 128: ncsnv2_128, L = 1086, sigma 190 -> 0.01.

Needs bedroom prepared for TFDS (`tfds build lsun/bedroom --file_format=array_record`).

    python main.py --config configs/ncsnv2/bedroom_ncsnv2_128_discrete.py --workdir runs/bedroom_ncsnv2_128_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ncsnv2/bedroom_ncsnv2_128_discrete.py:tiny --workdir runs/tiny_ncsnv2_bedroom_ncsnv2_128_discrete --mode train
"""
from configs import published, tiny
from configs.defaults import get_default_configs


def get_config(arg: str | None = None):
  config = get_default_configs()
  config.data.dataset = 'lsun/bedroom'
  config.data.image_size = 128
  config.data.num_channels = 3
  config.data.random_flip = True
  published.refinenet(config, 'ncsnv2_128')
  config.model.sigma_max = 190.0
  config.model.num_scales = 1086
  config.model.ema_rate = 0.999
  config.training.batch_size = 64
  config.training.n_iters = 300000
  config.training.snapshot_freq = 5000
  config.training.snapshot_freq_for_preemption = 5000
  config.optim.lr = 0.0001
  config.sampling.method = 'pc'
  config.sampling.predictor = 'none'
  config.sampling.corrector = 'ald'
  config.sampling.n_steps_each = 3
  config.sampling.snr = 0.095
  config.sampling.eps = 1e-5
  return tiny.variant(config, arg)
