"""Family defaults for CelebA 64x64 (score_sde's default_celeba_configs). Needs the TFDS data."""
from configs.defaults import get_default_configs


def get_celeba_configs():
  config = get_default_configs()
  config.training.batch_size = 128
  config.training.n_iters = 1300000
  config.training.n_jitted_steps = 5
  config.data.dataset = 'celeb_a'
  config.data.image_size = 64
  config.data.num_channels = 3
  config.data.random_flip = True
  config.data.centered = False
  config.model.sigma_max = 90.
  config.model.num_scales = 1000
  config.model.dropout = 0.1
  config.sampling.snr = 0.17
  config.eval.batch_size = 1024
  return config
