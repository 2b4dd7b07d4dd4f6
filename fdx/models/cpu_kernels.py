"""CPU kernels through XLA's FFI (`jax.ffi`) for what XLA CPU runs far below memory speed; GPU/TPU never use them.

One kernel: the depthwise convolution's kernel gradient (`depthwise_kernel_grad.cc`), which XLA CPU 0.10 computes as a
reduction ~35x slower than reading its inputs. The source is compiled with the system C++ compiler by `make setup`
(`python -m fdx.models.cpu_kernels`) or else on first use (about 2 s) into `$FDX_CACHE` (default `~/.cache/fdx`), keyed
by the source, the compiler flags and jaxlib's version, and shared by processes from then on. Where no compiler exists,
the build fails or `FDX_CPU_KERNELS=0` is set, `load()` says why and callers keep their pure-XLA form
(`fdx.models.layers`: same values up to float rounding).
"""

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name('depthwise_kernel_grad.cc')
DEPTHWISE_KERNEL_GRAD = 'fdx_depthwise_kernel_grad'


def _cpu_flags() -> list[str]:
    """AVX2 + FMA where /proc/cpuinfo lists them (the build runs on the host that uses it), else the baseline ISA."""
    try:
        flags = next(line for line in Path('/proc/cpuinfo').read_text().splitlines() if line.startswith('flags'))
    except (OSError, StopIteration):
        return []
    return ['-mavx2', '-mfma'] if {'avx2', 'fma'} <= set(flags.split()) else []


def _cache_dir() -> Path:
    return Path(os.environ.get('FDX_CACHE') or Path.home() / '.cache' / 'fdx') / 'cpu_kernels'


def _build(compiler: str) -> Path:
    """The shared library for this source, flags and jaxlib, compiled now unless cached (written atomically)."""
    import jaxlib

    flags = ['-O3', '-std=c++17', '-shared', '-fPIC', '-pthread', *_cpu_flags()]
    key = hashlib.sha256(SOURCE.read_bytes() + ' '.join([compiler, *flags, jaxlib.__version__]).encode()).hexdigest()
    library = _cache_dir() / f'{SOURCE.stem}-{key[:16]}.so'
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        built = Path(tmp) / library.name
        command = [compiler, *flags, f'-I{jax.ffi.include_dir()}', str(SOURCE), '-o', str(built)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            last = (result.stderr.strip().splitlines() or ['no output'])[-1]
            raise RuntimeError(f'{compiler} {SOURCE.name} failed (exit {result.returncode}): {last}')
        os.replace(built, library)
    return library


@functools.cache
def load() -> str | None:
    """Builds and registers the kernels once per process; None when they are usable, else the reason they are not."""
    if os.environ.get('FDX_CPU_KERNELS', '1') == '0':
        return 'FDX_CPU_KERNELS=0'
    compiler = os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++') or shutil.which('clang++')
    if compiler is None:
        return 'no C++ compiler (c++, g++ or clang++ on PATH, or $CXX)'
    try:
        library = ctypes.cdll.LoadLibrary(str(_build(compiler)))
    except (OSError, RuntimeError) as error:
        return str(error)
    jax.ffi.register_ffi_target(
        DEPTHWISE_KERNEL_GRAD, jax.ffi.pycapsule(library.FdxDepthwiseKernelGrad), platform='cpu'
    )
    return None


def depthwise_kernel_grad(x: jax.Array, g: jax.Array, kernel_size: tuple[int, int], padding) -> jax.Array:
    """dK[i, j, c] = Σ_bhw x_padded[b, h + i, w + j, c] · g[b, h, w, c] of a stride-1 depthwise convolution (f32 NHWC
    `x` and output gradient `g`, `padding` ((top, bottom), (left, right))) as [kh, kw, C]. Needs `load()` to be None."""
    (top, _), (left, _) = padding
    out = jax.ShapeDtypeStruct((*kernel_size, x.shape[-1]), jnp.float32)
    threads = len(os.sched_getaffinity(0))
    return jax.ffi.ffi_call(DEPTHWISE_KERNEL_GRAD, out)(
        x, g, pad_top=np.int64(top), pad_left=np.int64(left), threads=np.int64(threads)
    )


if __name__ == '__main__':  # `make setup` builds the kernels at install time: `python -m fdx.models.cpu_kernels`
    reason = load()
    print('fdx CPU kernels: built' if reason is None else f'fdx CPU kernels: not built ({reason}); pure XLA is used')
