"""Family defaults for 256 px and larger images (score_sde's default_lsun_configs).

LSUN needs TFDS (`lsun/<category>`); CelebA-HQ and FFHQ (`celeb_a_hq`, `ffhq`) are
read from a folder of image files given as data.data_dir.
"""
from configs.defaults import get_default_configs


def get_lsun_configs():
  config = get_default_configs()
  config.training.batch_size = 64
  config.training.n_iters = 2400000
  config.training.snapshot_freq_for_preemption = 5000
  config.data.dataset = 'lsun/bedroom'
  config.data.image_size = 256
  config.data.num_channels = 3
  config.data.random_flip = True
  config.data.centered = False
  config.model.sigma_max = 378.
  config.model.sigma_min = 0.01
  config.model.num_scales = 2000
  config.model.dropout = 0.
  config.sampling.snr = 0.075
  config.eval.begin_ckpt = 50
  config.eval.end_ckpt = 96
  return config
