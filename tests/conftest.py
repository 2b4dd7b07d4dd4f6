"""Fixtures shared by several test modules."""

import fcntl
import os
import shutil

# The suite compiles far more than it runs (tiny shapes, a few steps each): XLA's cheap mode compiles faster and
# measured test_train + test_anti_compression at 363 s against 435 s on one core. JAX_DISABLE_MOST_OPTIMIZATIONS=0
# runs the suite fully optimised.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

import pytest
from compilation_cache import persistent_compilation_cache

from fdx import cli


def session_folder(tmp_path_factory):
    """A temporary folder of the whole test session: under pytest-xdist the parent (pytest-N/) of every worker's
    own (popen-gwK/), shared by the workers; otherwise the session's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


@pytest.fixture(scope='session')
def synth_compilation_cache(tmp_path_factory):
    """Where the tiny synth's generator workers keep their compiled programs (for a second run of the same seed)."""
    path = session_folder(tmp_path_factory) / 'synth-jax-cache'
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope='session')
def synth(tmp_path_factory, synth_compilation_cache):
    """The tiny `fdx synth` benchmark (DFDM, FF++ and Celeb-DF layouts), made once per test session: the first
    pytest-xdist worker that needs it makes it (~80 s) while the others wait on a lock, then all read it."""
    shared = session_folder(tmp_path_factory)
    out, done = shared / 'synth-tiny-seed1', shared / 'synth-tiny-seed1.done'
    with open(shared / 'synth-tiny-seed1.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)  # a worker that failed half-way
            with persistent_compilation_cache(synth_compilation_cache):
                assert cli.main(['synth', '--out', str(out), '--size', 'tiny', '--seed', '1']) == 0
            done.touch()
    return out
