"""MLP score model (continuous, VP SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/vp_checkerboard_mlp_continuous.py --workdir runs/toy_vp --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/toy/vp_checkerboard_mlp_continuous.py:tiny --workdir runs/tiny_toy_vp_checkerboard_mlp_continuous --mode train
"""
from configs import tiny
from configs.default_toy import get_toy_configs


def get_config(arg: str | None = None):
  config = get_toy_configs()
  config.training.sde = 'vpsde'
  return tiny.variant(config, arg)
