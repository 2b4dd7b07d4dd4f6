"""A persistent XLA compilation cache shared by the runs of one test module.

Tests that train the same tiny model several times (in `fdx` subprocesses, a grid's points, and in this process)
compile identical programs again and again: on the 2-core test machine a tiny ResNet's train step takes 5-10 s to
compile and a few milliseconds to run. `persistent_compilation_cache(path)` points JAX's persistent compilation cache
at `path` in this process and, through `JAX_COMPILATION_CACHE_DIR` in `os.environ`, in every subprocess started
meanwhile, so that each program is compiled once and its executable loaded afterwards (the same executable: the same
numbers). Everything is undone on exit.
"""

import contextlib

import jax
import pytest


@contextlib.contextmanager
def persistent_compilation_cache(path):
    from jax.experimental.compilation_cache import compilation_cache

    options = {'jax_compilation_cache_dir': str(path), 'jax_persistent_cache_min_compile_time_secs': 0.0}
    previous = {name: getattr(jax.config, name) for name in options}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in options.items():
            patch.setenv(name.upper(), str(value))
            jax.config.update(name, value)
        compilation_cache.reset_cache()
        try:
            yield path
        finally:
            for name, value in previous.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()
