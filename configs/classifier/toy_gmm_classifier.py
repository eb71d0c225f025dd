"""Time-dependent classifier p_t(y | x(t)) (MLP, 4 classes = mixture components) on the `gmm` toy.

Shares configs/classifier/toy_gmm_score.py's SDE, data and classifier.* fields.

    python main.py --config configs/classifier/toy_gmm_classifier.py --workdir runs/gmm_classifier --mode train

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/classifier/toy_gmm_classifier.py:tiny --workdir runs/tiny_classifier_toy_gmm_classifier --mode train
"""
from configs import tiny
from configs.classifier import toy_gmm_score


def get_config(arg: str | None = None):
  config = toy_gmm_score.get_config()
  config.training.objective = 'time_classifier'
  config.model.name = config.classifier.model
  config.training.n_iters = 3000
  return tiny.variant(config, arg)
