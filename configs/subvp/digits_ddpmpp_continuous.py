"""DDPM++ (continuous, sub-VP SDE) on the bundled digits.

    python main.py --config configs/subvp/digits_ddpmpp_continuous.py --workdir runs/digits_subvp --mode train
"""
from configs.default_digits import get_digits_configs


def get_config():
  config = get_digits_configs()
  config.training.sde = 'subvpsde'
  config.training.continuous = True
  config.sampling.predictor = 'euler_maruyama'
  config.sampling.corrector = 'none'
  config.model.name = 'ncsnpp'
  config.model.embedding_type = 'positional'
  config.model.scale_by_sigma = False
  config.model.resblock_type = 'biggan'
  config.model.skip_rescale = True
  config.model.init_scale = 0.
  return config
