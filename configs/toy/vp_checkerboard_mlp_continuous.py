"""MLP score model (continuous, VP SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/vp_checkerboard_mlp_continuous.py --workdir runs/toy_vp --mode train
"""
from configs.default_toy import get_toy_configs


def get_config():
  config = get_toy_configs()
  config.training.sde = 'vpsde'
  return config
