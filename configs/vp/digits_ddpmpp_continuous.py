"""DDPM++ (continuous, VP SDE) on the bundled digits: the `make demo` default.

    python main.py --config configs/vp/digits_ddpmpp_continuous.py --workdir runs/digits_vp --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/vp/digits_ddpmpp_continuous.py:tiny --workdir runs/tiny_vp_digits_ddpmpp_continuous --mode train
"""
from configs import tiny
from configs.default_digits import get_digits_configs


def get_config(arg: str | None = None):
  config = get_digits_configs()
  config.training.sde = 'vpsde'
  config.training.continuous = True
  config.sampling.predictor = 'euler_maruyama'
  config.sampling.corrector = 'none'
  config.model.name = 'ncsnpp'
  config.model.embedding_type = 'positional'
  config.model.scale_by_sigma = False
  config.model.resblock_type = 'biggan'
  config.model.skip_rescale = True
  config.model.init_scale = 0.
  return tiny.variant(config, arg)
