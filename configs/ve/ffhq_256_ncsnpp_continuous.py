"""NCSN++ cont. (VE) on FFHQ 256, as score_sde's configs/ve/ffhq_256_ncsnpp_continuous.py.

Reads a folder of image files (PNG/JPEG at any depth), centre-cropped and resized
to data.image_size:

    python main.py --config configs/ve/ffhq_256_ncsnpp_continuous.py --workdir runs/ffhq_256_ncsnpp_continuous --mode train \
        --config.data.data_dir=/path/to/ffhq_images

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/ffhq_256_ncsnpp_continuous.py:tiny --workdir runs/tiny_ve_ffhq_256_ncsnpp_continuous --mode train
"""
from configs import published, tiny
from configs.default_lsun import get_lsun_configs


def get_config(arg: str | None = None):
  config = get_lsun_configs()
  published.set_sde(config, 'vesde', continuous=True)
  published.ncsnpp_high_res(config, 256)
  config.data.dataset = 'ffhq'
  config.data.image_size = 256
  config.model.sigma_max = 348.0
  return tiny.variant(config, arg)
