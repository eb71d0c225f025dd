"""DDPM++ (VE, discrete SMLD objective) on CIFAR-10 (score-SDE paper, Table 3).

score_sde ships no config for this row: it is the model of score_sde's
configs/vp/cifar10_ddpmpp.py with the VE settings of its configs/ve/cifar10_ncsnpp.py
(positional time embedding, output divided by sigma, inputs in [0, 1], summed
loss, reverse-diffusion + Langevin sampler).

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/ve/cifar10_ddpmpp_discrete.py --workdir runs/cifar10_ddpmpp_discrete --mode train

Tiny variant (a few training steps on CPU, on the bundled digits; configs/tiny.py):

    python main.py --config configs/ve/cifar10_ddpmpp_discrete.py:tiny --workdir runs/tiny_ve_cifar10_ddpmpp_discrete --mode train
"""
from configs import published, tiny
from configs.default_cifar10 import get_cifar10_configs


def get_config(arg: str | None = None):
  config = get_cifar10_configs()
  published.set_sde(config, 'vesde', continuous=False)
  published.ddpmpp(config)
  return tiny.variant(config, arg)
