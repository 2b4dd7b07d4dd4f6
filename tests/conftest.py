"""Fixtures shared by several test modules."""

import pytest

from fdx import cli


@pytest.fixture(scope='session')
def synth(tmp_path_factory):
    """The tiny `fdx synth` benchmark (DFDM and FF++ layouts), made once per test session."""
    out = tmp_path_factory.mktemp('synth')
    assert cli.main(['synth', '--out', str(out), '--size', 'tiny', '--seed', '1']) == 0
    return out
