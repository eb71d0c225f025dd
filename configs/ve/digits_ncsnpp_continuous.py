"""NCSN++ (continuous, VE SDE) on the bundled digits.

    python main.py --config configs/ve/digits_ncsnpp_continuous.py --workdir runs/digits_ve --mode train

sigma_max follows NCSNv2's technique 1: about the largest distance between two
training images (8x8 in [0, 1]: at most sqrt(64) = 8, about 7 in practice).

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/ve/digits_ncsnpp_continuous.py:tiny --workdir runs/tiny_ve_digits_ncsnpp_continuous --mode train
"""
from configs import tiny
from configs.default_digits import get_digits_configs


def get_config(arg: str | None = None):
  config = get_digits_configs()
  config.training.sde = 'vesde'
  config.training.continuous = True
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.corrector = 'langevin'
  config.sampling.eps = 1e-5
  config.data.centered = False
  config.model.name = 'ncsnpp'
  config.model.sigma_max = 8.
  config.model.sigma_min = 0.01
  config.model.embedding_type = 'fourier'
  config.model.scale_by_sigma = True
  config.model.resblock_type = 'biggan'
  return tiny.variant(config, arg)
