"""Worker for benchmarks/versus_reference.py: times this project's code.

Each row is built with the same pieces as the mode that runs it: the jitted,
donated train step of `train.py`; one score evaluation; the jitted PC sampler of
`--mode sample` (`generate.make_snapshot_sampler`); the jitted PF-ODE bits/dim of
`--mode likelihood` (`evaluate.make_bpd_fn`). The device is JAX's default
backend (the driver sets JAX_PLATFORMS for `--device`). Speaks `vs_protocol`.
"""
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import vs_protocol  # noqa: E402


class Ours:
  """Builds and times this project's train step, forward, PC sampler and bpd."""

  def __init__(self):
    import jax
    self.jax = jax
    self.rows = {}
    self.compiled = {}   # row id -> compiled executable (train / forward rows)

  def versions(self):
    import flax
    import jaxlib
    import numpy
    jax = self.jax
    return {'jax': jax.__version__, 'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
            'numpy': numpy.__version__, 'backend': jax.default_backend(),
            'devices': [d.device_kind for d in jax.devices()],
            'xla_flags': os.environ.get('XLA_FLAGS', ''), 'python': sys.version.split()[0],
            'glibc_malloc_tuned': xla_cpu.MALLOC_TUNED}

  def _config(self, row):
    config = importlib.import_module(row['ours_config']).get_config()
    for dotted, value in {**row['model_overrides'], **row.get('ours_overrides', {})}.items():
      group, field = dotted.split('.')
      setattr(getattr(config, group), field, tuple(value) if isinstance(value, list) else value)
    return config

  def setup(self, row):
    import jax.numpy as jnp
    import numpy as np
    import evaluate
    import datasets
    import generate
    import objectives
    import optim
    import parallel
    import sde_lib
    import train
    from models import create_model
    from models import utils as mutils
    jax = self.jax

    config = self._config(row)
    kind, b = row['kind'], row['batch']
    shape = (config.data.image_size, config.data.image_size, config.data.num_channels)
    mesh = parallel.make_mesh()
    rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    scaler = datasets.get_data_scaler(config)
    rng = np.random.default_rng(0)
    if kind == 'pc':
      config.sampling.method, config.sampling.predictor = 'pc', 'reverse_diffusion'
      config.sampling.corrector, config.sampling.n_steps_each = 'langevin', 1
      config.sampling.num_steps, config.sampling.batch_size = row['num_steps'], b
      config.sampling.eps = 1e-5 if config.training.sde.lower() == 'vesde' else 1e-3
    sde, _ = sde_lib.get_sde(config)
    model = create_model(config)
    optimizer = optim.get_optimizer(config)
    state = train.init_state(config, model, optimizer, shape, mesh)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))

    if kind == 'train':
      step = jax.jit(objectives.get_train_step(config, sde, model, optimizer),
                     in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)
      x = parallel.global_batch(scaler(rng.uniform(0, 1, (b,) + shape).astype(np.float32)), mesh)
      step = self.compiled[row['id']] = step.lower(state, x).compile()
      holder = {'state': state}

      def run():
        holder['state'], loss = step(holder['state'], x)
        return float(loss)
    elif kind == 'forward':
      def forward(params, x):
        score_fn = mutils.score_fn_from_config(config, sde, model, params)
        return jnp.mean(score_fn(x, jnp.full((x.shape[0],), 0.5)))

      fwd = jax.jit(forward, in_shardings=(rep, data), out_shardings=rep)
      x = parallel.global_batch(scaler(rng.uniform(0, 1, (b,) + shape).astype(np.float32)), mesh)
      params = state.ema_params
      fwd = self.compiled[row['id']] = fwd.lower(params, x).compile()

      def run():
        return float(fwd(params, x))
    elif kind == 'pc':
      sample = generate.make_snapshot_sampler(config, sde, model, mesh, shape)
      params, counter = state.ema_params, [0]

      def run():
        counter[0] += 1
        x, nfe = sample(jax.random.PRNGKey(counter[0]), params)
        return {'nfe': int(nfe), 'mean': float(jnp.mean(x))}
    elif kind == 'bpd':
      config.eval.batch_size, config.eval.rtol, config.eval.atol = b, row['tol'], row['tol']
      config.eval.ode_method, config.eval.probe = 'dopri5', 'rademacher'
      quant = evaluate.Quantization(levels=256, scale=float(scaler(1.) - scaler(0.)))
      bpd_fn = evaluate.make_bpd_fn(config, sde, model, mesh, quant)
      # Quantized values v / 255 in model space; make_bpd_fn dequantizes on device.
      x = parallel.global_batch(
          scaler(rng.integers(0, 256, (b,) + shape).astype(np.float32) / 255.), mesh)
      params, key = state.ema_params, jax.random.PRNGKey(0)

      def run():
        bpd, nfe = bpd_fn(params, key, x)
        return {'nfe': int(nfe), 'bpd': float(jnp.mean(bpd))}
    else:
      raise ValueError(kind)
    self.rows[row['id']] = run
    info = {'params': int(n_params)}
    if row['id'] in self.compiled:
      cost = self.compiled[row['id']].cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      info['xla_gflop_per_call'] = float(cost.get('flops', 0.)) / 1e9 if cost else None
    return info

  def run(self, row_id):
    return self.rows[row_id]()   # every row ends in float(...): the result is on the host


def main():
  tic = time.perf_counter()
  vs_protocol.serve(Ours(), import_seconds=time.perf_counter() - tic)


if __name__ == '__main__':
  main()
