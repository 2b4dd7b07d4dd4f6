"""Fixtures shared by several test modules."""

import pytest
from compilation_cache import persistent_compilation_cache

from fdx import cli


@pytest.fixture(scope='session')
def synth_compilation_cache(tmp_path_factory):
    """Where the tiny synth's generator workers keep their compiled programs (for a second run of the same seed)."""
    return tmp_path_factory.mktemp('synth-jax-cache')


@pytest.fixture(scope='session')
def synth(tmp_path_factory, synth_compilation_cache):
    """The tiny `fdx synth` benchmark (DFDM, FF++ and Celeb-DF layouts), made once per test session."""
    out = tmp_path_factory.mktemp('synth')
    with persistent_compilation_cache(synth_compilation_cache):
        assert cli.main(['synth', '--out', str(out), '--size', 'tiny', '--seed', '1']) == 0
    return out
