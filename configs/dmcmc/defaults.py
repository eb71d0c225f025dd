"""The `dmcmc.*` group (Denoising MCMC, dmcmc/) on top of a family's defaults.

A DMCMC experiment has three configs sharing these fields: a score model's
training config, a noise-level classifier's training config (same dmcmc.*; the
classifier's size lives in dmcmc.classifier_*), and the `--mode dmcmc` run
config (the score config plus the run's workdirs). The classifier checkpoint is
restored with the run config's optim.*, so classifier configs change only
optim.lr, never optim.warmup's sign or optim.grad_clip's.
"""
import ml_collections

from configs.default_toy import get_toy_configs
from configs.defaults import get_default_configs


def get_config() -> ml_collections.ConfigDict:
  """Every field (configs/defaults.py, through the toy family) plus the dmcmc.* group."""
  return add_dmcmc_configs(get_toy_configs())


def add_dmcmc_configs(config: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """Adds the dmcmc.* group to a family's defaults (default: configs/defaults.py's)."""
  config = get_default_configs() if config is None else config
  config.dmcmc = d = ml_collections.ConfigDict()
  # Checkpoints (--mode dmcmc): each a workdir written by --mode train.
  d.score_workdir = ''
  d.classifier_workdir = ''
  # The noise ladder of the classifier and the chain (VE view), geometric.
  d.n_levels = 1000
  d.sigma_min = 0.01
  d.sigma_max = 50.
  # The classifier network (models/noise_classifier.py).
  d.classifier_model = 'noise_mlp'          # noise_mlp | noise_cnn
  d.classifier_hidden_dims = (256, 256, 256)
  d.classifier_channels = (32, 64)          # noise_cnn only
  # The DLG chain.
  d.n_chains = 256                          # persistent chains (a multiple of the device count)
  d.num_outputs = 1024                      # a multiple of n_chains; one block per n_chains outputs
  # Defaults (docs/dmcmc.md, "Step convention and defaults"): a true Gibbs step and one DLG
  # step per output, so each output is a draw of the chain's joint law; the reference's
  # argmax update and n_skip = 10 lowest-sigma selection are biased (exact-score benchmark).
  d.n_skip = 1                              # DLG steps per output block (the reference: 10)
  d.include_start = False                   # may a block's starting state be its output?
  d.sigma_update = 'gibbs'                  # gibbs (draw from q) | argmax (the reference)
  d.eta = 0.05                              # Langevin step h = eta sigma_k^2 (or eta)
  d.eta_scaling = 'sigma2'                  # sigma2 | none (the reference: constant eta)
  # Initialisation: prior draw at sigma_max, [finisher run + noise], warm-up.
  d.init_integrator = ''                    # '' or a finisher name: a rough first sample
  d.init_integrator_steps = 10
  d.init_noise = 0.                         # std of noise added after that run
  d.warmup_steps = 100                      # K
  d.eta0 = 0.05                             # warm-up step size
  # The finisher: N steps over [sigma_n, sigma_min] per sample, then Tweedie.
  # edm_heun | edm_stochastic | pf_ode_adaptive | pf_ode_fixed | reverse_diffusion | euler_maruyama
  d.integrator = 'edm_heun'
  d.integrator_steps = 10
  d.s_churn = 40.                           # edm_stochastic
  d.rho = 7.                                # EDM schedule exponent
  d.rtol = 1e-5                             # pf_ode_adaptive
  d.atol = 1e-5
  d.ode_method = 'dopri5'
  d.n_track = 16                            # chains whose (x, sigma) path is recorded (2-D toys)
  return config
