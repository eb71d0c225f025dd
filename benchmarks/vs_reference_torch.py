"""Worker for benchmarks/versus_reference.py: times the reference PyTorch code.

Runs under the reference's own Python (a venv with torch, ml_collections, numpy,
scipy; see docs/performance.md), with the reference checkout (yang-song/
score_sde_pytorch, obtained by the user) on sys.path. It imports only torch and
the reference's modules, never this project's. It speaks the line protocol of
`vs_protocol.serve` on stdin/stdout (that module is pure stdlib).

Shims, applied in memory, none of which changes what is computed:
- `torch.utils.cpp_extension.load` is replaced by a stub before the reference's
  `op` package is imported: `op/upfirdn2d.py` and `op/fused_act.py` compile CUDA
  kernels at import time, which fails without nvcc. On a CPU tensor the
  reference's own `upfirdn2d` calls its pure-PyTorch `upfirdn2d_native`, so the
  stub is never called (it raises if it were). With `--device cuda` and a CUDA
  toolchain the stub is not installed.
- The reference's `datasets.py` imports TensorFlow; the worker does not import
  it and applies the data scaler (2x - 1 when data.centered) itself.
"""
import collections
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_protocol  # noqa: E402


def _stub_cpp_extension():
  import torch.utils.cpp_extension as ext

  class _NoKernel:
    def __getattr__(self, name):
      raise RuntimeError(f'reference CUDA kernel {name} called on CPU (shimmed out)')

  ext.load = lambda *a, **k: _NoKernel()


class Reference:
  """Builds and times the reference's train step, forward, PC sampler and bpd."""

  def __init__(self, ref_dir: str, device: str, threads: int):
    import torch
    self.torch = torch
    if threads:
      torch.set_num_threads(threads)
    if device == 'cpu':
      _stub_cpp_extension()
    sys.path.insert(0, ref_dir)
    os.chdir(ref_dir)
    self.device = torch.device(device)
    self.losses = importlib.import_module('losses')
    self.sampling = importlib.import_module('sampling')
    self.likelihood = importlib.import_module('likelihood')
    self.sde_lib = importlib.import_module('sde_lib')
    self.mutils = importlib.import_module('models.utils')
    self.ema_mod = importlib.import_module('models.ema')
    importlib.import_module('models.ncsnpp')   # registers ncsnpp
    self.rows = {}

  def versions(self):
    import numpy
    import scipy
    t = self.torch
    return {'torch': t.__version__, 'numpy': numpy.__version__, 'scipy': scipy.__version__,
            'threads': t.get_num_threads(), 'device': str(self.device),
            'mkldnn': bool(t.backends.mkldnn.is_available()),
            'python': sys.version.split()[0]}

  def _config(self, row):
    config = importlib.import_module(row['ref_config']).get_config()
    for dotted, value in row['model_overrides'].items():
      group, field = dotted.split('.')
      setattr(getattr(config, group), field, tuple(value) if isinstance(value, list) else value)
    config.device = self.device
    return config

  def _sde(self, config, num_scales=None):
    n = num_scales or config.model.num_scales
    s = self.sde_lib
    if config.training.sde.lower() == 'vpsde':
      return s.VPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max, N=n), 1e-3
    if config.training.sde.lower() == 'vesde':
      return s.VESDE(sigma_min=config.model.sigma_min, sigma_max=config.model.sigma_max, N=n), 1e-5
    raise ValueError(config.training.sde)

  def setup(self, row):
    torch = self.torch
    torch.manual_seed(0)
    config = self._config(row)
    model = self.mutils.create_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    b, shape = row['batch'], (row['batch'], 3, config.data.image_size, config.data.image_size)
    centered = config.data.centered
    scaler = (lambda x: 2 * x - 1) if centered else (lambda x: x)
    inverse = (lambda x: (x + 1) / 2) if centered else (lambda x: x)
    kind = row['kind']
    if kind == 'train':
      sde, _ = self._sde(config)
      ema = self.ema_mod.ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
      optimizer = self.losses.get_optimizer(config, model.parameters())
      state = dict(optimizer=optimizer, model=model, ema=ema, step=0)
      step = self.losses.get_step_fn(
          sde, train=True, optimize_fn=self.losses.optimization_manager(config),
          reduce_mean=config.training.reduce_mean, continuous=config.training.continuous,
          likelihood_weighting=config.training.likelihood_weighting)
      x = scaler(torch.rand(shape, generator=gen)).to(self.device)

      def run():
        return step(state, x).item()
    elif kind == 'forward':
      sde, _ = self._sde(config)
      model.eval()
      score_fn = self.mutils.get_score_fn(sde, model, train=False, continuous=True)
      x = scaler(torch.rand(shape, generator=gen)).to(self.device)
      t = torch.full((b,), 0.5, device=self.device)

      def run():
        with torch.no_grad():
          return float(score_fn(x, t).mean())
    elif kind == 'pc':
      sde, eps = self._sde(config, num_scales=row['num_steps'])
      model.eval()
      s = self.sampling
      sampler = s.get_pc_sampler(sde, shape, s.ReverseDiffusionPredictor, s.LangevinCorrector,
                                 inverse, snr=config.sampling.snr, n_steps=1,
                                 probability_flow=False, continuous=True, denoise=True,
                                 eps=eps, device=self.device)

      def run():
        x, nfe = sampler(model)
        return {'nfe': int(nfe), 'mean': float(x.mean())}
    elif kind == 'bpd':
      sde, _ = self._sde(config)
      model.eval()
      fn = self.likelihood.get_likelihood_fn(sde, inverse, hutchinson_type='Rademacher',
                                             rtol=row['tol'], atol=row['tol'], method='RK45',
                                             eps=1e-5)
      # Quantized values v / 255 plus uniform dequantization, as the reference's run_lib.
      v = torch.randint(0, 256, shape, generator=gen).float()
      x = scaler((v + torch.rand(shape, generator=gen)) / 256.).to(self.device)

      def run():
        bpd, _, nfe = fn(model, x)
        return {'nfe': int(nfe), 'bpd': float(bpd.mean())}
    else:
      raise ValueError(kind)
    self.rows[row['id']] = run
    return {'params': int(n_params)}

  def run(self, row_id):
    out = self.rows[row_id]()
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()
    return out


def profile(ref, row, steps, top=25):
  """torch.profiler's per-op table (self CPU time) of `steps` calls of a row, and the
  forward time per block (each block's forward inside a record_function range)."""
  import json
  torch = ref.torch
  ref.setup(row)
  run = ref.rows[row['id']]
  run()
  model = None
  for obj in run.__closure__ or ():
    contents = obj.cell_contents
    if isinstance(contents, dict) and 'model' in contents:
      model = contents['model']
  ranges = {}
  if model is not None:
    for name, mod in model.named_modules():
      cls = type(mod).__name__
      if 'Resnet' in cls or 'Attn' in cls or cls in ('Upsample', 'Downsample', 'Combine'):
        def pre(m, inputs, _n=f'{cls}:{name}'):
          ranges[id(m)] = torch.autograd.profiler.record_function('block ' + _n)
          ranges[id(m)].__enter__()

        def post(m, inputs, output):
          ranges.pop(id(m)).__exit__(None, None, None)
        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)
  acts = [torch.profiler.ProfilerActivity.CPU]
  tic, cpu_tic = time.perf_counter(), time.process_time()
  with torch.profiler.profile(activities=acts) as prof:
    for _ in range(steps):
      run()
  wall, cpu = (time.perf_counter() - tic) / steps, (time.process_time() - cpu_tic) / steps
  events = prof.key_averages()
  ops = [e for e in events if not e.key.startswith('block ')]
  total = sum(e.self_cpu_time_total for e in ops)
  by_op = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:top]
  blocks = collections.Counter()
  for e in events:
    if e.key.startswith('block '):
      blocks[e.key.split(':')[0][6:]] += e.cpu_time_total * 1e-6 / steps
  print(json.dumps({
      'benchmark': 'profile_reference', 'row': row['id'], 'batch': row['batch'],
      'torch': torch.__version__, 'threads': torch.get_num_threads(),
      'wall_seconds_per_step_profiled': wall, 'cpu_seconds_per_step': cpu,
      'op_self_seconds_per_step': total * 1e-6 / steps,
      'by_op': [{'op': e.key, 'self_seconds': e.self_cpu_time_total * 1e-6 / steps,
                 'share': e.self_cpu_time_total / total, 'calls': e.count // steps}
                for e in by_op],
      'forward_seconds_by_block_class': dict(blocks.most_common()),
  }, indent=1))


def main():
  ref_dir, device, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
  tic = time.perf_counter()
  ref = Reference(ref_dir, device, threads)
  if len(sys.argv) > 4 and sys.argv[4] == '--profile':
    # --profile MODEL KIND BATCH STEPS: rows as versus_reference.py builds them.
    model, kind, batch, steps = sys.argv[5], sys.argv[6], int(sys.argv[7]), int(sys.argv[8])
    cfgs = {'ddpmpp': 'configs.vp.cifar10_ddpmpp_continuous',
            'ncsnpp': 'configs.ve.cifar10_ncsnpp_continuous'}
    arch = {'model.nf': 32, 'model.ch_mult': [1, 2, 2], 'model.num_res_blocks': 2,
            'model.attn_resolutions': [16]}
    profile(ref, {'id': 'profile', 'kind': kind, 'batch': batch, 'ref_config': cfgs[model],
                  'model_overrides': arch}, steps)
    return
  vs_protocol.serve(ref, import_seconds=time.perf_counter() - tic)


if __name__ == '__main__':
  main()
