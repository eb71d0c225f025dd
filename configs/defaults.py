"""Every config field, with score_sde's names. Family files change a few.

Fields keep the names of yang-song/score_sde so that existing overrides such as
`--config.training.batch_size=64` carry over.
"""
import ml_collections


def get_default_configs() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = ''                    # filled by main.py from --config's path
  config.seed = 42

  config.training = training = ml_collections.ConfigDict()
  training.sde = 'vpsde'              # vesde | vpsde | subvpsde
  training.continuous = True
  training.batch_size = 128           # global, over all devices and hosts
  training.n_iters = 1300000
  training.n_jitted_steps = 1         # train steps fused into one jitted call
  training.microbatches = 1           # gradient accumulation: the batch in this many parts (per step)
  training.network_parts = 0          # network forward/backward in this many parts of its batch;
                                      # 0: auto (XLA:CPU: parts of 16 32x32x3 images; accelerators: 1)
  training.log_freq = 50
  training.eval_freq = 100
  training.snapshot_freq = 50000      # permanent checkpoint + sample grid
  training.snapshot_freq_for_preemption = 10000  # rolling checkpoint
  training.snapshot_sampling = True
  training.likelihood_weighting = False
  training.importance_sampling = False  # with likelihood_weighting: t ~ g^2/std^2, not U(eps, T)
  training.reduce_mean = False
  training.eps = 1e-5                 # t ~ U(eps, T) in the continuous loss
  training.max_to_keep = 3
  training.precision = 'float32'      # float32 | bfloat16 (bf16 compute, f32 params/optimizer)
  training.objective = 'score'        # score | noise_classifier (DMCMC's, dmcmc/) | time_classifier (guidance.py)

  config.sampling = sampling = ml_collections.ConfigDict()
  sampling.method = 'pc'              # pc | ald_ncsn | ode (probability-flow ODE, adaptive) | edm
  sampling.predictor = 'euler_maruyama'
  sampling.corrector = 'none'
  sampling.n_steps_each = 1
  sampling.noise_removal = True
  sampling.probability_flow = False
  sampling.snr = 0.16
  sampling.eps = 1e-3                 # 1e-3 for VP/sub-VP, 1e-5 for VE
  sampling.batch_size = 64
  sampling.num_steps = 0              # 0 means use model.num_scales
  sampling.ode_method = 'dopri5'      # diffrax solver for method 'ode': dopri5 | tsit5 | bosh3 | heun
  sampling.rtol = 1e-5
  sampling.atol = 1e-5
  sampling.rho = 7.                   # EDM (Karras et al. 2022): schedule exponent
  sampling.s_churn = 0.               # EDM: 0 = deterministic Heun (Algorithm 1)
  sampling.s_noise = 1.
  sampling.s_tmin = 0.
  sampling.s_tmax = float('inf')
  sampling.step_lr = 2e-5             # NCSN v1 annealed Langevin's epsilon (method 'ald_ncsn')
  # NCSN v1's Langevin step at alpha_i = step_lr sigma_i^2 / sigma_L^2 (method 'ald_ncsn'):
  # 'paper' x + alpha/2 s + sqrt(alpha) z (Song & Ermon 2019, Algorithm 1) | 'code'
  # x + alpha s + sqrt(2 alpha) z (ermongroup/ncsn, which the published numbers used).
  sampling.langevin_convention = 'paper'
  sampling.progress_every = 0         # log "step i/N" every this many steps (0: silent)
  # --mode inpaint / colorize (controllable.py); sampling.method is pc or ald_ncsn.
  sampling.mask = 'half'              # known pixels: half (left) | center | random | a .npy/.png HxW
  sampling.mask_fraction = 0.5        # 'random': fraction of pixels known
  sampling.source = 'test'            # images to complete: train | test split, or a .npy [N, H, W, C] in [0, 1]
  sampling.num_images = 8             # how many (a multiple of the device count)
  # Class-conditional sampling (guidance.py): s(x, t) + w grad_x log p_t(y | x) in --mode sample.
  sampling.classifier_workdir = ''    # a --mode train run of training.objective=time_classifier; '' = off
  sampling.labels = 'rows'            # rows (each class in turn, one grid row each) | a list '3,3,7'
  sampling.guidance_scale = 1.        # w >= 0; 1 = Song et al. 2021 (App. I.1)

  config.eval = evaluate = ml_collections.ConfigDict()
  evaluate.begin_ckpt = 1
  evaluate.end_ckpt = 26
  evaluate.batch_size = 512
  evaluate.enable_sampling = False
  evaluate.num_samples = 50000
  evaluate.enable_loss = True
  evaluate.enable_bpd = False
  evaluate.bpd_dataset = 'test'
  evaluate.eps = 1e-5
  # --mode likelihood / eval (evaluate.py). begin_ckpt..end_ckpt are score_sde's checkpoint
  # numbers: ckpt n is the checkpoint at step n * training.snapshot_freq.
  evaluate.num_repeats = 5            # passes over bpd_dataset, fresh dequantization noise each
  evaluate.bpd_num_batches = 0        # 0 = the whole split; n = its first n batches
  evaluate.rtol = 1e-5                # PF-ODE solver tolerances for bits/dim
  evaluate.atol = 1e-5
  evaluate.ode_method = 'dopri5'      # dopri5 | tsit5 | bosh3 | heun
  evaluate.probe = 'rademacher'       # Hutchinson probe: rademacher | gaussian | exact
  # Sample quality (metrics.py). FID/KID/IS need FID Inception-v3 weights as .npz, made by
  # tools/convert_inception_weights.py; digits use a classifier this repo trains itself.
  evaluate.inception_path = ''        # required for FID/KID/IS on non-digits image data
  evaluate.digits_classifier_path = ''  # '' = assets/digits_classifier.npz (trained if missing)
  evaluate.stats_split = 'train'      # real-data split of the reference statistics (score_sde: train)
  evaluate.num_stats_examples = 0     # 0 = the whole split; n = its first n examples
  evaluate.stats_dir = ''             # cache reference features here as .npz; '' = memory only
  evaluate.stats_path = ''            # reference .npz for eval: --mode fid_stats, score_sde pool_3, pytorch-fid mu/sigma
  evaluate.stats_folder = ''          # --mode fid_stats: a folder of images instead of eval.stats_split
  evaluate.feature_batch_size = 200   # global batch of the feature network
  evaluate.kid_subset_size = 1000     # KID: unbiased MMD^2 averaged over random subsets
  evaluate.kid_num_subsets = 100
  evaluate.is_splits = 10             # Inception Score: mean and std over this many splits

  config.data = data = ml_collections.ConfigDict()
  data.dataset = 'digits'
  data.image_size = 8
  data.num_channels = 1
  data.random_flip = False
  data.centered = False
  data.uniform_dequantization = False
  data.data_dir = ''                  # TFDS data_dir; '' means TFDS's default
  data.dim = 2                        # data dimension for the 2-D toys
  data.num_train = 0                  # toys: size of the fixed train set, 0 = fresh draws

  config.model = model = ml_collections.ConfigDict()
  model.name = 'ncsnpp'
  model.sigma_min = 0.01
  model.sigma_max = 50.
  model.num_scales = 1000
  model.beta_min = 0.1
  model.beta_max = 20.
  model.dropout = 0.1
  model.embedding_type = 'positional'  # positional | fourier
  model.fourier_scale = 16.
  model.scale_by_sigma = False
  model.ema_rate = 0.9999
  model.ema_warmup = True              # decay min(ema_rate, (1+n)/(10+n)), as TF's EMA(num_updates)
  model.normalization = 'GroupNorm'
  model.nonlinearity = 'swish'
  model.nf = 128
  model.ch_mult = (1, 2, 2, 2)
  model.num_res_blocks = 2
  model.attn_resolutions = (16,)
  model.resamp_with_conv = True
  model.conditional = True
  model.fir = False
  model.fir_kernel = (1, 3, 3, 1)
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.progressive = 'none'
  model.progressive_input = 'none'
  model.progressive_combine = 'sum'
  model.attention_type = 'ddpm'
  model.init_scale = 0.
  model.conv_size = 3
  # Discrete time labels: 'score_sde' (VE: round((1 - t)(N - 1)), 0 = sigma_max; VP: (N - 1) t)
  # or 'legacy' (both sde.timestep(t), 0 = least noise), for checkpoints from before; docs/models.md.
  model.label_convention = 'score_sde'
  model.ddpm_num_groups = 32           # ddpm's GroupNorm groups, as both references; 0 = min(C // 4, 32)
  # ncsn / ncsnv2: score_sde_pytorch's choices (set by tools/import_checkpoint.py for .pth files):
  model.instance_norm_unbiased = False  # InstanceNorm++ takes the unbiased variance of channel means
  model.refine_align_corners = False    # refine blocks resize bilinearly with align_corners=True
  model.hidden_dims = (256, 256, 256)  # mlp only
  model.attn_every_up_block = False    # ddpm only: True = Ho et al.'s up-path attention (35.7M)

  # The time-dependent classifier's network (models/time_classifier.py); its training config
  # and the sampling config share these fields.
  config.classifier = classifier = ml_collections.ConfigDict()
  classifier.model = 'time_cnn'       # time_cnn (images) | time_mlp (vectors)
  classifier.channels = (32, 64)      # time_cnn only
  classifier.hidden_dims = (256,)
  classifier.nf = 32                  # time-embedding base width

  config.optim = optim = ml_collections.ConfigDict()
  optim.optimizer = 'Adam'
  optim.lr = 2e-4
  optim.beta1 = 0.9
  optim.eps = 1e-8
  optim.weight_decay = 0.
  optim.warmup = 5000
  optim.grad_clip = 1.

  return config
