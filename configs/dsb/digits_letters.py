"""DSB transfer: bundled digits (pi_0) <-> 8x8 letters rendered locally (pi_1).

The small-scale analogue of DSB's EMNIST -> MNIST experiment: both sets are 8x8, 17 grey
levels, centred strokes, 1500 train / 297 test images; see dsb/data.py. Samples are digits
produced by the backward network from held-out letters.

    python main.py --config configs/dsb/digits_letters.py --workdir runs/dsb_dl --mode dsb
"""
from configs.dsb import digits


def get_config():
  config = digits.get_config()
  config.dsb.prior = 'letters'
  config.dsb.estimate_prior = True   # the OU reference heads for the letters' mean image
  return config
