"""MLP score model (continuous, VE SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/ve_checkerboard_mlp_continuous.py --workdir runs/toy_ve --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/toy/ve_checkerboard_mlp_continuous.py:tiny --workdir runs/tiny_toy_ve_checkerboard_mlp_continuous --mode train
"""
from configs import tiny
from configs.default_toy import get_toy_configs


def get_config(arg: str | None = None):
  config = get_toy_configs()
  config.training.sde = 'vesde'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.eps = 1e-5
  config.model.scale_by_sigma = True
  return tiny.variant(config, arg)
