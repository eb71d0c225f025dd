"""NCSN++ cont. (VE) on CelebA-HQ 1024, as score_sde's configs/ve/celebahq_ncsnpp_continuous.py.

Reads a folder of image files (PNG/JPEG at any depth), centre-cropped and resized
to data.image_size:

    python main.py --config configs/ve/celebahq_1024_ncsnpp_continuous.py --workdir runs/celebahq_1024_ncsnpp_continuous --mode train \
        --config.data.data_dir=/path/to/celeb_a_hq_images

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/celebahq_1024_ncsnpp_continuous.py:tiny --workdir runs/tiny_ve_celebahq_1024_ncsnpp_continuous --mode train
"""
from configs import published, tiny
from configs.default_lsun import get_lsun_configs


def get_config(arg: str | None = None):
  config = get_lsun_configs()
  published.set_sde(config, 'vesde', continuous=True)
  published.ncsnpp_high_res(config, 1024)
  config.data.dataset = 'celeb_a_hq'
  config.data.image_size = 1024
  config.model.sigma_max = 1348.0
  config.training.batch_size = 8
  config.training.reduce_mean = True
  config.sampling.snr = 0.15
  return tiny.variant(config, arg)
