"""DDPM cont. (VP) on CIFAR-10, as score_sde's configs/vp/cifar10_ddpm_continuous.py.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`).

    python main.py --config configs/vp/cifar10_ddpm_continuous.py --workdir runs/cifar10_ddpm_continuous --mode train

Tiny override (a few training steps on CPU, on the bundled digits):

    python main.py --config configs/vp/cifar10_ddpm_continuous.py --workdir runs/tiny --mode train \
        --config.model.nf=8 --config.model.ddpm_num_groups=0 --config.model.ch_mult='(1,2)' --config.model.num_res_blocks=1 \
        --config.model.attn_resolutions='(4,)' --config.data.dataset=digits \
        --config.data.image_size=8 --config.data.num_channels=1 --config.training.n_jitted_steps=1 --config.training.n_iters=20
"""
from configs import published
from configs.default_cifar10 import get_cifar10_configs


def get_config():
  config = get_cifar10_configs()
  published.set_sde(config, 'vpsde', continuous=True)
  published.ddpm(config)
  return config
