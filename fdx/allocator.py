"""jemalloc for CPU runs of the `fdx` command.

XLA CPU allocates the buffers of every executable run afresh. glibc's malloc maps each allocation above 32 MiB with
mmap and unmaps it on free, so every page of a large activation is faulted in and zeroed by the kernel on every step:
on the 2-core machine of the README, an elementwise op over 200 MB ran at 4-5 GB/s instead of 30-50 GB/s, and the
Xception train step took 9.3 s instead of 4.9 s (PyTorch eager gains too: 5.1 s → 3.7 s). jemalloc with purging off
keeps freed pages mapped and reuses them.

`fdx` therefore restarts itself once with `LD_PRELOAD=<libjemalloc>` and `MALLOC_CONF=dirty_decay_ms:-1,
muzzy_decay_ms:-1` when all of these hold: `FDX_JEMALLOC` is unset or `auto` (`0` turns it off, `1` forces it), no
GPU/TPU device file exists and `JAX_PLATFORMS` does not name another backend, and the library is installed
(`apt-get install libjemalloc2`; `make setup` does it as root). The process then keeps its peak memory mapped until
it exits, which is what a training job does anyway.

`python -m fdx.allocator COMMAND [ARGS...]` runs any other command (a script, the test suite) the same way.
"""

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

CANDIDATES = (
    '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
    '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
    '/usr/lib64/libjemalloc.so.2',
    '/usr/local/lib/libjemalloc.so.2',
)
MALLOC_CONF = 'dirty_decay_ms:-1,muzzy_decay_ms:-1'
ACCELERATOR_DEVICES = ('/dev/nvidia0', '/dev/accel0', '/dev/vfio/0')


def jemalloc_path() -> str | None:
    """The installed jemalloc shared library, or None."""
    return next((path for path in CANDIDATES if Path(path).exists()), None)


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether this run should use jemalloc (see the module docstring); raises on a bad `FDX_JEMALLOC`."""
    mode = environ.get('FDX_JEMALLOC', 'auto')
    if mode not in ('auto', '0', '1'):
        raise ValueError(f'FDX_JEMALLOC: expected auto, 0 or 1, got {mode!r}')
    if mode != 'auto':
        return mode == '1'
    platforms = environ.get('JAX_PLATFORMS', '')
    if platforms and platforms.split(',')[0] != 'cpu':
        return False
    return not any(Path(device).exists() for device in ACCELERATOR_DEVICES)


def preload_environ(environ: Mapping[str, str], library: str) -> dict[str, str]:
    """`environ` with `library` preloaded and purging off (a user's own MALLOC_CONF is kept)."""
    env = dict(environ)
    env['LD_PRELOAD'] = ' '.join(filter(None, [library, environ.get('LD_PRELOAD', '')]))
    env.setdefault('MALLOC_CONF', MALLOC_CONF)
    return env


def jemalloc_environ(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to restart with, or None where jemalloc is not wanted, not installed (a note on stderr when
    forced) or already loaded; exits naming `FDX_JEMALLOC` when it is bad."""
    try:
        if not wanted(environ):
            return None
    except ValueError as error:
        sys.exit(f'fdx: {error}')
    library = jemalloc_path()
    if library is None:
        if environ.get('FDX_JEMALLOC') == '1':
            print('fdx: FDX_JEMALLOC=1 but libjemalloc.so.2 is missing: apt-get install libjemalloc2', file=sys.stderr)
        return None
    if library in environ.get('LD_PRELOAD', ''):
        return None
    return preload_environ(environ, library)


def restart_with_jemalloc(argv: Sequence[str]) -> None:
    """Replaces this process by `python -m fdx.cli ARGV` under jemalloc where `jemalloc_environ` says so."""
    env = jemalloc_environ(os.environ)
    if env is not None:
        os.execve(sys.executable, [sys.executable, '-m', 'fdx.cli', *argv], env)


def main(argv: Sequence[str]) -> None:
    """Replaces this process by the command line `argv`, under jemalloc where `fdx` would use it."""
    if not argv:
        sys.exit('usage: python -m fdx.allocator COMMAND [ARGS...]')
    os.execvpe(argv[0], list(argv), jemalloc_environ(os.environ) or dict(os.environ))


if __name__ == '__main__':
    main(sys.argv[1:])
