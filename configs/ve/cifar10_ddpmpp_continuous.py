"""DDPM++ cont. (VE) on CIFAR-10 (score-SDE paper, Table 3).

score_sde ships no config for this row: it is the model of score_sde's
configs/vp/cifar10_ddpmpp_continuous.py with the VE settings of its
configs/ve/cifar10_ncsnpp_continuous.py (Fourier time features, output divided
by sigma, inputs in [0, 1], summed loss, reverse-diffusion + Langevin sampler).

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ve/cifar10_ddpmpp_continuous.py --workdir runs/cifar10_ddpmpp_continuous --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/cifar10_ddpmpp_continuous.py:tiny --workdir runs/tiny_ve_cifar10_ddpmpp_continuous --mode train
"""
from configs import published, tiny
from configs.default_cifar10 import get_cifar10_configs


def get_config(arg: str | None = None):
  config = get_cifar10_configs()
  published.set_sde(config, 'vesde', continuous=True)
  published.ddpmpp(config)
  return tiny.variant(config, arg)
