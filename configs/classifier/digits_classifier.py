"""Time-dependent classifier p_t(y | x(t)) (small CNN, 10 classes) for the digits VP score model.

It shares configs/vp/digits_ddpmpp_continuous.py's SDE, data and classifier.* fields, so the
score config samples with it: train both, then sample one grid row per digit class.

    python main.py --config configs/vp/digits_ddpmpp_continuous.py --workdir runs/digits_vp --mode train
    python main.py --config configs/classifier/digits_classifier.py --workdir runs/digits_vp_classifier --mode train
    python main.py --config configs/vp/digits_ddpmpp_continuous.py --workdir runs/digits_vp --mode sample \
        --config.sampling.classifier_workdir=runs/digits_vp_classifier --config.sampling.batch_size=100

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/classifier/digits_classifier.py:tiny --workdir runs/tiny_classifier_digits_classifier --mode train
"""
from configs import tiny
from configs.vp import digits_ddpmpp_continuous


def get_config(arg: str | None = None):
  config = digits_ddpmpp_continuous.get_config()
  config.training.objective = 'time_classifier'
  config.model.name = config.classifier.model
  config.training.n_iters = 3000
  config.training.snapshot_freq = 3000
  return tiny.variant(config, arg)
