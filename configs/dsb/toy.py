"""DSB between N(0, I) and a 2-D toy (MLP per direction); the toy is the config argument.

    python main.py --config configs/dsb/toy.py:moons --workdir runs/dsb_moons --mode dsb

Any of datasets.TOYS works: checkerboard, 8gaussians, swissroll, moons, circles, pinwheel,
scurve, gmm.
"""
from configs.dsb.defaults import get_dsb_configs


def get_config(toy: str = 'moons'):
  config = get_dsb_configs()
  config.data.dataset = toy
  config.data.dim = 2
  config.model.name = 'mlp'
  config.model.hidden_dims = (128, 128, 128)
  config.model.nf = 32
  config.dsb.num_steps = 20
  config.dsb.gamma_min = 0.01
  config.dsb.gamma_max = 0.2
  config.dsb.n_ipf = 10
  # Mean matching regresses targets whose noise (variance 2 gamma) dwarfs their signal
  # (~gamma |score|): it needs many steps and large batches.
  config.dsb.num_iter = 5000
  config.dsb.batch_size = 512
  config.dsb.log_freq = 500
  return config
