"""NCSN v1 (Song & Ermon 2019) on CIFAR-10: RefineNet, ngf 128, L = 10, sigma 1 -> 0.01.

Needs cifar10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ncsn/cifar10_ncsn_discrete.py --workdir runs/cifar10_ncsn_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ncsn/cifar10_ncsn_discrete.py:tiny --workdir runs/tiny_ncsn_cifar10_ncsn_discrete --mode train
"""
from configs import published, tiny
from configs.defaults import get_default_configs


def get_config(arg: str | None = None):
  config = get_default_configs()
  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.random_flip = True
  published.refinenet(config, 'ncsn', nf=128)
  config.model.sigma_max = 1.
  config.model.num_scales = 10
  config.model.ema_rate = 0.
  config.training.batch_size = 128
  config.training.n_iters = 200000
  config.training.snapshot_freq = 5000
  config.training.snapshot_freq_for_preemption = 5000
  config.optim.lr = 1e-3
  config.sampling.method = 'ald_ncsn'      # Algorithm 1
  config.sampling.n_steps_each = 100
  config.sampling.step_lr = 2e-5
  # The published samples and scores came from ermongroup/ncsn, whose step is
  # x + alpha s + sqrt(2 alpha) z, twice Algorithm 1's at the same eps (sampling.py).
  config.sampling.langevin_convention = 'code'
  config.sampling.noise_removal = False
  return tiny.variant(config, arg)
