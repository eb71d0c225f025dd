"""MLP score model (continuous, SUBVP SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/subvp_checkerboard_mlp_continuous.py --workdir runs/toy_subvp --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/toy/subvp_checkerboard_mlp_continuous.py:tiny --workdir runs/tiny_toy_subvp_checkerboard_mlp_continuous --mode train
"""
from configs import tiny
from configs.default_toy import get_toy_configs


def get_config(arg: str | None = None):
  config = get_toy_configs()
  config.training.sde = 'subvpsde'
  return tiny.variant(config, arg)
