"""MLP score model (continuous, SUBVP SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/subvp_checkerboard_mlp_continuous.py --workdir runs/toy_subvp --mode train
"""
from configs.default_toy import get_toy_configs


def get_config():
  config = get_toy_configs()
  config.training.sde = 'subvpsde'
  return config
