"""DDPM++ (continuous, sub-VP SDE) on the bundled digits: the demo config with the sub-VP SDE.

    python main.py --config configs/subvp/digits_ddpmpp_continuous.py --workdir runs/digits_subvp --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/subvp/digits_ddpmpp_continuous.py:tiny --workdir runs/tiny_subvp_digits_ddpmpp_continuous --mode train
"""
from configs import tiny
from configs.vp import digits_ddpmpp_continuous


def get_config(arg: str | None = None):
  config = digits_ddpmpp_continuous.get_config()
  config.training.sde = 'subvpsde'
  return tiny.variant(config, arg)
