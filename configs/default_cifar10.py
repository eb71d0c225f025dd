"""Family defaults for CIFAR-10 (score_sde's default_cifar10_configs). Needs the TFDS data."""
from configs.defaults import get_default_configs


def get_cifar10_configs():
  config = get_default_configs()
  config.training.batch_size = 128
  config.training.n_iters = 1300000
  config.training.snapshot_freq = 50000
  config.training.log_freq = 50
  config.training.eval_freq = 100
  config.training.snapshot_freq_for_preemption = 10000
  config.training.n_jitted_steps = 5

  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.random_flip = True
  config.data.centered = False
  config.data.uniform_dequantization = False

  config.eval.batch_size = 1024
  config.sampling.batch_size = 64
  return config
