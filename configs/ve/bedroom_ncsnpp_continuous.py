"""NCSN++ cont. (VE) on LSUN bedroom 256, as score_sde's configs/ve/bedroom_ncsnpp_continuous.py.

Needs the images in TFDS (`tfds build lsun/...`).

    python main.py --config configs/ve/bedroom_ncsnpp_continuous.py --workdir runs/bedroom_ncsnpp_continuous --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/bedroom_ncsnpp_continuous.py:tiny --workdir runs/tiny_ve_bedroom_ncsnpp_continuous --mode train
"""
from configs import published, tiny
from configs.default_lsun import get_lsun_configs


def get_config(arg: str | None = None):
  config = get_lsun_configs()
  published.set_sde(config, 'vesde', continuous=True)
  published.ncsnpp_high_res(config, 256)
  config.data.dataset = 'lsun/bedroom'
  config.data.image_size = 256
  config.model.sigma_max = 378.0
  return tiny.variant(config, arg)
