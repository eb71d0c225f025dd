"""Family defaults for the 2-D toys in datasets.py (MLP score network)."""
from configs.defaults import get_default_configs


def get_toy_configs():
  config = get_default_configs()
  config.training.batch_size = 512
  config.training.n_iters = 5000
  config.training.log_freq = 250
  config.training.eval_freq = 1000
  config.training.snapshot_freq = 5000
  config.training.snapshot_freq_for_preemption = 1000
  config.training.n_jitted_steps = 50
  config.training.reduce_mean = True

  config.sampling.batch_size = 2048
  config.sampling.num_steps = 500

  config.data.dataset = 'checkerboard'
  config.data.dim = 2
  config.data.centered = False

  config.model.name = 'mlp'
  config.model.hidden_dims = (256, 256, 256)
  config.model.embedding_type = 'positional'
  config.model.dropout = 0.
  config.model.ema_rate = 0.999
  config.model.sigma_max = 5.

  config.classifier.model = 'time_mlp'
  config.classifier.hidden_dims = (128, 128)

  config.optim.lr = 1e-3
  config.optim.warmup = 100
  return config
