"""NCSN++ (VE, SMLD) on CelebA 64x64, as score_sde's configs/ve/celeba_ncsnpp.py.

Needs CelebA prepared for TFDS (`tfds build celeb_a --file_format=array_record`).

    python main.py --config configs/ve/celeba_ncsnpp_discrete.py --workdir runs/celeba_ncsnpp_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/celeba_ncsnpp_discrete.py:tiny --workdir runs/tiny_ve_celeba_ncsnpp_discrete --mode train
"""
from configs import published, tiny
from configs.default_celeba import get_celeba_configs


def get_config(arg: str | None = None):
  config = get_celeba_configs()
  published.set_sde(config, 'vesde', continuous=False)
  published.ncsnpp(config)
  config.model.embedding_type = 'positional'
  return tiny.variant(config, arg)
