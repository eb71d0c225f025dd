"""NCSN++ cont. (VP) on CIFAR-10, as score_sde's configs/vp/cifar10_ncsnpp_continuous.py.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/vp/cifar10_ncsnpp_continuous.py --workdir runs/cifar10_ncsnpp_continuous --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/vp/cifar10_ncsnpp_continuous.py:tiny --workdir runs/tiny_vp_cifar10_ncsnpp_continuous --mode train
"""
from configs import published, tiny
from configs.default_cifar10 import get_cifar10_configs


def get_config(arg: str | None = None):
  config = get_cifar10_configs()
  published.set_sde(config, 'vpsde', continuous=True)
  published.ncsnpp(config)
  return tiny.variant(config, arg)
