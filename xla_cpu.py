"""XLA:CPU settings of this project, applied by importing this module before JAX starts.

In the pinned jaxlib (0.10.2) XLA:CPU hands every convolution and matmul to
YNNPACK, which runs the 3x3 convolutions of DDPM++ / NCSN++ on one thread: CPU
time / wall = 1.00 on a 2-core machine, against 1.98 for XLA's own Eigen
convolutions of the same shapes (benchmarks/xla_cpu_flags.py measures both).
So unless the user says otherwise we keep YNNPACK for the rest and give
convolutions and dots back to Eigen:

    --xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot

Measured in alternating processes (docs/performance.md): 1.36x faster train steps
and 1.5-1.6x faster forward passes for nf-32 U-Nets at batch 16-64, level on the
digits demo, but 3-13% slower for the published nf-128 widths at batch 2, whose
wide convolutions YNNPACK does thread (SCORE_XLA_CPU_DEFAULTS=0 for those).
Only XLA:CPU reads the flag; GPU and TPU runs are unaffected. XLA reads
XLA_FLAGS once, when the backend starts, so this must be imported before the
first computation (main.py, parallel.py, the benchmarks, studies and tests
import it first thing); a process whose backend already runs keeps its flags.

JAX's persistent compilation cache does not key its entries on this flag (seen in
tests/test_xla_cpu.py): when switching it, disable or clear that cache.

Leave it to the user: a flag of the same name already in XLA_FLAGS wins, and
SCORE_XLA_CPU_DEFAULTS=0 turns this off. Applied only with the jaxlib it was
measured on: an unknown flag would abort XLA, and a newer YNNPACK may thread
its convolutions.

Second, glibc's malloc (`tune_malloc`). XLA:CPU allocates each call's temporary
buffer in one piece (342 MB for the DDPM++ train step at batch 16, 1.4 GB at 64),
and with async dispatch it does so on one of its worker threads. glibc serves a
chunk over 32 MB with a fresh mmap (a thread's arena cannot hold one over 64 MB,
whatever mallopt says) and unmaps it on free, so the kernel zeroes every page again
on every call: 88k page faults and 0.15-0.2 s of kernel time per step at batch 16,
350k and 0.6 s at 64. So, where the allocator is glibc's (no LD_PRELOAD) and the
backend is the CPU, we run CPU computations inline on the calling thread
(jax_cpu_enable_async_dispatch = False; the buffer then comes from the main arena) and
let the main arena grow by brk instead of mmap and keep its top between calls
(mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2 GiB - 1). Faults per step fall to
10-200 and the step runs about as fast as under tcmalloc (docs/performance.md). The cost:
freed memory up to 2 GiB stays with the process for its next call, as tcmalloc
keeps it too, and the first few calls may each grow the heap by a temporary before its
layout settles (small allocations carved out of a freed temporary). SCORE_CPU_MALLOC=0 (or SCORE_XLA_CPU_DEFAULTS=0) keeps glibc's
defaults and async dispatch. Like the flag, this must happen before the backend starts.
"""
import ctypes
import importlib.util
import os
import platform

FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot'
TESTED_JAXLIB = ('0.10.',)


def wanted(environ=os.environ, jaxlib_version: str | None = None) -> bool:
  """Whether to add FLAG to XLA_FLAGS in `environ`."""
  if environ.get('SCORE_XLA_CPU_DEFAULTS', '1') == '0':
    return False
  if FLAG.split('=')[0] in environ.get('XLA_FLAGS', ''):
    return False   # the user chose
  if jaxlib_version is None:
    from importlib import metadata
    try:
      jaxlib_version = metadata.version('jaxlib')
    except metadata.PackageNotFoundError:
      return False
  return jaxlib_version.startswith(TESTED_JAXLIB)


def configure(environ=os.environ, jaxlib_version: str | None = None) -> str:
  """Adds FLAG to environ['XLA_FLAGS'] when `wanted`; returns the resulting XLA_FLAGS."""
  if wanted(environ, jaxlib_version):
    environ['XLA_FLAGS'] = (environ.get('XLA_FLAGS', '') + ' ' + FLAG).strip()
  return environ.get('XLA_FLAGS', '')


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # glibc's malloc.h
TRIM_THRESHOLD = 2**31 - 1                 # mallopt takes an int: the largest
ACCELERATOR_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm7_plugin', 'libtpu')


def malloc_wanted(environ=os.environ) -> bool:
  """Whether `tune_malloc` applies: glibc's malloc, a CPU backend, nobody chose otherwise."""
  if '0' in (environ.get('SCORE_XLA_CPU_DEFAULTS', '1'), environ.get('SCORE_CPU_MALLOC', '1')):
    return False
  if environ.get('LD_PRELOAD'):
    return False   # another allocator (tcmalloc, jemalloc) is in charge
  platforms = environ.get('JAX_PLATFORMS', '')
  if platforms:
    if platforms.split(',')[0] != 'cpu':
      return False
  elif any(importlib.util.find_spec(p) for p in ACCELERATOR_PLUGINS):
    return False   # JAX will pick the accelerator: its host side keeps glibc's defaults
  return platform.libc_ver()[0] == 'glibc'


def tune_malloc(environ=os.environ) -> bool:
  """Inline CPU dispatch + main-arena brk allocation, kept between calls; True if applied."""
  if not malloc_wanted(environ):
    return False
  import jax   # the flag is read when the CPU client is created, i.e. on first use
  try:
    jax.config.update('jax_cpu_enable_async_dispatch', False)
  except AttributeError:   # a JAX without the switch: mallopt alone would not reach XLA's buffers
    return False
  libc = ctypes.CDLL(None)
  return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


configure()
MALLOC_TUNED = tune_malloc()   # recorded by the benchmarks
