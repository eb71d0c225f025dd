"""DDPM++ (continuous, sub-VP SDE) on the bundled digits: the demo config with the sub-VP SDE.

    python main.py --config configs/subvp/digits_ddpmpp_continuous.py --workdir runs/digits_subvp --mode train
"""
from configs.vp import digits_ddpmpp_continuous


def get_config():
  config = digits_ddpmpp_continuous.get_config()
  config.training.sde = 'subvpsde'
  return config
