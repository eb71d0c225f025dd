"""NCSNv2 (Song & Ermon 2020) on CIFAR-10: ncsnv2_64, L = 232, sigma 50 -> 0.01.

Needs cifar10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ncsnv2/cifar10_ncsnv2_64_discrete.py --workdir runs/cifar10_ncsnv2_64_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ncsnv2/cifar10_ncsnv2_64_discrete.py:tiny --workdir runs/tiny_ncsnv2_cifar10_ncsnv2_64_discrete --mode train
"""
from configs import published, tiny
from configs.defaults import get_default_configs


def get_config(arg: str | None = None):
  config = get_default_configs()
  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.random_flip = True
  published.refinenet(config, 'ncsnv2_64')
  config.model.sigma_max = 50.0
  config.model.num_scales = 232
  config.model.ema_rate = 0.999
  config.training.batch_size = 128
  config.training.n_iters = 300000
  config.training.snapshot_freq = 5000
  config.training.snapshot_freq_for_preemption = 5000
  config.optim.lr = 0.0001
  config.sampling.method = 'pc'
  config.sampling.predictor = 'none'
  config.sampling.corrector = 'ald'
  config.sampling.n_steps_each = 5
  config.sampling.snr = 0.176
  config.sampling.eps = 1e-5
  return tiny.variant(config, arg)
