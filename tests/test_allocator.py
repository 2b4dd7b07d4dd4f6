"""`fdx` restarts CPU runs under jemalloc (fdx.allocator): when, with which environment, and the opt-outs."""

import json
import os
import subprocess
import sys

import pytest

from fdx import allocator


@pytest.fixture
def no_devices(tmp_path, monkeypatch):
    device = tmp_path / 'nvidia0'
    monkeypatch.setattr(allocator, 'ACCELERATOR_DEVICES', (str(device),))
    return device


def test_wanted_on_cpu_hosts_only(no_devices):
    assert allocator.wanted({})
    assert allocator.wanted({'JAX_PLATFORMS': 'cpu'})
    assert not allocator.wanted({'JAX_PLATFORMS': 'cuda,cpu'})
    assert not allocator.wanted({'FDX_JEMALLOC': '0'})
    no_devices.touch()
    assert not allocator.wanted({})
    assert allocator.wanted({'FDX_JEMALLOC': '1'})
    with pytest.raises(ValueError, match="FDX_JEMALLOC: expected auto, 0 or 1, got 'yes'"):
        allocator.wanted({'FDX_JEMALLOC': 'yes'})


def test_preload_environ_keeps_the_users_settings():
    env = allocator.preload_environ({'PATH': '/bin'}, '/lib/libjemalloc.so.2')
    assert env == {'PATH': '/bin', 'LD_PRELOAD': '/lib/libjemalloc.so.2', 'MALLOC_CONF': allocator.MALLOC_CONF}
    env = allocator.preload_environ({'LD_PRELOAD': '/lib/x.so', 'MALLOC_CONF': 'narenas:1'}, '/lib/libjemalloc.so.2')
    assert env == {'LD_PRELOAD': '/lib/libjemalloc.so.2 /lib/x.so', 'MALLOC_CONF': 'narenas:1'}


def fdx(tmp_path, **env) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / 'peak.json'
    environ = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', 'MALLOC_CONF', 'FDX_JEMALLOC')}
    argv = [sys.executable, '-m', 'fdx.cli', 'bench', 'peak', '--n', '64', '--repeats', '1', '--json', str(out)]
    done = subprocess.run(argv, env={**environ, 'JAX_PLATFORMS': 'cpu', **env}, capture_output=True, text=True)
    return done, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.skipif(allocator.jemalloc_path() is None, reason='libjemalloc2 is not installed (make setup installs it)')
def test_the_fdx_program_restarts_under_jemalloc(tmp_path):
    done, result = fdx(tmp_path)
    assert done.returncode == 0, done.stderr
    cpu_host = allocator.wanted({'JAX_PLATFORMS': 'cpu'})  # False where a GPU/TPU device file exists
    assert result['machine']['malloc'] == ('jemalloc' if cpu_host else 'default (glibc)')
    done, result = fdx(tmp_path, FDX_JEMALLOC='0')
    assert done.returncode == 0, done.stderr
    assert result['machine']['malloc'] == 'default (glibc)'


def test_a_bad_setting_is_named(tmp_path):
    done, result = fdx(tmp_path, FDX_JEMALLOC='on')
    assert done.returncode == 1 and result is None
    assert "fdx: FDX_JEMALLOC: expected auto, 0 or 1, got 'on'" in done.stderr


@pytest.mark.skipif(allocator.jemalloc_path() is None, reason='libjemalloc2 is not installed (make setup installs it)')
def test_any_command_under_jemalloc():
    environ = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', 'MALLOC_CONF', 'FDX_JEMALLOC')}
    argv = [sys.executable, '-m', 'fdx.allocator', 'sh', '-c', 'echo "$LD_PRELOAD|$MALLOC_CONF"']
    done = subprocess.run(argv, env={**environ, 'FDX_JEMALLOC': '1'}, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f'{allocator.jemalloc_path()}|{allocator.MALLOC_CONF}'
    done = subprocess.run(argv, env={**environ, 'FDX_JEMALLOC': '0'}, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == '|'
