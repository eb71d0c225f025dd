"""DDPM (VE) on CIFAR-10, as score_sde's configs/ve/cifar10_ddpm.py.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ve/cifar10_ddpm_discrete.py --workdir runs/cifar10_ddpm_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/cifar10_ddpm_discrete.py:tiny --workdir runs/tiny_ve_cifar10_ddpm_discrete --mode train
"""
from configs import published, tiny
from configs.default_cifar10 import get_cifar10_configs


def get_config(arg: str | None = None):
  config = get_cifar10_configs()
  published.set_sde(config, 'vesde', continuous=False)
  published.ddpm(config)
  return tiny.variant(config, arg)
