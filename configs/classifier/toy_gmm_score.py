"""MLP score model (VP, continuous) on the labelled `gmm` toy, for class-conditional sampling.

    python main.py --config configs/classifier/toy_gmm_score.py --workdir runs/gmm --mode train
    python main.py --config configs/classifier/toy_gmm_classifier.py --workdir runs/gmm_classifier --mode train
    python main.py --config configs/classifier/toy_gmm_score.py --workdir runs/gmm --mode sample \
        --config.sampling.classifier_workdir=runs/gmm_classifier --config.sampling.labels=0,1,2,3

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/classifier/toy_gmm_score.py:tiny --workdir runs/tiny_classifier_toy_gmm_score --mode train
"""
from configs import tiny
from configs.default_toy import get_toy_configs


def get_config(arg: str | None = None):
  config = get_toy_configs()
  config.data.dataset = 'gmm'
  config.training.sde = 'vpsde'
  config.training.n_iters = 5000
  config.sampling.batch_size = 2048   # a multiple of the 4 classes: labels='rows' works
  return tiny.variant(config, arg)
