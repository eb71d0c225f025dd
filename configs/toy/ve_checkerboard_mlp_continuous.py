"""MLP score model (continuous, VE SDE) on a 2-D toy; change the toy with --config.data.dataset.

    python main.py --config configs/toy/ve_checkerboard_mlp_continuous.py --workdir runs/toy_ve --mode train
"""
from configs.default_toy import get_toy_configs


def get_config():
  config = get_toy_configs()
  config.training.sde = 'vesde'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.eps = 1e-5
  config.model.scale_by_sigma = True
  return config
