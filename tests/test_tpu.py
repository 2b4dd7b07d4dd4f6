"""`fdx grid --backend tpu` (fdx.tpu): the exact gcloud commands per TPU VM slice, run against a TEST DOUBLE for
`gcloud` (a script on PATH that records its arguments: no TPU is reachable here), and the multi-host start from the
environment a TPU VM gives (fdx.sharding.initialize_distributed; the two-process training itself runs in
tests/test_train.py::test_two_processes_equal_one)."""

import json
import os
import shlex
from pathlib import Path

import pytest

from fdx import cli, grid, sharding, tpu

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'tests' / 'configs' / 'tiny.py')
FAKE_GCLOUD = """#!/bin/bash
# TEST DOUBLE for gcloud: records its arguments, answers `describe` with ACTIVE, fails trainings of point 001.
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$FAKE_GCLOUD_LOG"
case "$*" in
  *describe*) echo ACTIVE ;;
  *optim.lr=0.01*) echo "training failed" >&2; exit 4 ;;
esac
"""


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'gcloud').write_text(FAKE_GCLOUD)
    (bin_dir / 'gcloud').chmod(0o755)
    log = tmp_path / 'gcloud.jsonl'
    monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
    monkeypatch.setenv('FAKE_GCLOUD_LOG', str(log))
    return log


def _expected(name: str, archive: str, trainings: list[str], queued: bool) -> list[list[str]]:
    flags = ['--zone=us-central2-b', '--project=lab']
    out = []
    if queued:
        out.append(
            ['compute', 'tpus', 'queued-resources', 'create', f'{name}-qr', f'--node-id={name}']
            + ['--accelerator-type=v4-32', '--runtime-version=tpu-ubuntu2204-base', *flags]
        )
        out.append(
            ['compute', 'tpus', 'queued-resources', 'describe', f'{name}-qr', *flags, '--format=value(state.state)']
        )
    out.append(['compute', 'tpus', 'tpu-vm', 'scp', archive, f'{name}:fdx-src.tar.gz', *flags, '--worker=all'])
    setup = (
        'mkdir -p ~/fdx && tar -xzf ~/fdx-src.tar.gz -C ~/fdx && cd ~/fdx && '
        "{ [ -x .venv/bin/fdx ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'; }; }"
    )
    for command in (setup, *(f'cd ~/fdx && .venv/bin/{t}' for t in trainings)):
        out.append(['compute', 'tpus', 'tpu-vm', 'ssh', name, *flags, '--worker=all', f'--command={command}'])
    return out


def test_grid_on_tpu_slices_with_a_gcloud_test_double(fake_gcloud, tmp_path, capsys):
    shared = '/mnt/shared/runs'
    args = ['grid', f'{TINY}:slurm', '--backend', 'tpu', '--tpu', 'slice-a,slice-b', '--zone', 'us-central2-b']
    args += ['--project', 'lab', '--root', shared, '--name', 'g', '--local-root', str(tmp_path / 'local')]
    args += ['--queued-resource', '--accelerator-type', 'v4-32', '--runtime-version', 'tpu-ubuntu2204-base']
    assert cli.main([*args, '--dry-run']) == 0
    printed = capsys.readouterr().out
    assert not fake_gcloud.exists()  # a dry run runs nothing
    assert cli.main(args) == 1  # point 001 fails (the test double says so)
    calls = [json.loads(line) for line in fake_gcloud.read_text().splitlines()]
    points = grid.expand_sweep(f'{TINY}:slurm')
    train = [shlex.join(grid.point_command(f'{TINY}:slurm', p, shared, 'g')) for p in points]
    archive = str(Path(os.environ.get('TMPDIR', '/tmp')) / 'fdx-src-g.tar.gz')
    by_slice = {name: [c for c in calls if any(name in a for a in c)] for name in ('slice-a', 'slice-b')}
    assert by_slice['slice-a'] == _expected('slice-a', archive, [train[0], train[2]], queued=True)
    # slice-b's training fails, so nothing follows it there
    assert by_slice['slice-b'] == _expected('slice-b', archive, [train[1]], queued=True)
    for argv in _expected('slice-a', archive, [train[0], train[2]], queued=True):
        if 'describe' not in argv:
            assert shlex.join(['gcloud', *argv]) in printed
    status = json.loads((tmp_path / 'local' / 'g' / grid.STATUS_FILE).read_text())
    assert status['backend'] == 'tpu'
    assert [(p['slice'], p['status'], p['exit_code']) for p in status['points']] == [
        ('slice-a', 'finished', 0),
        ('slice-b', 'failed', 4),
        ('slice-a', 'finished', 0),
    ]
    assert 'training failed' in (tmp_path / 'local' / 'g' / 'tpu' / 'slice-b.log').read_text()
    assert Path(archive).stat().st_size > 0  # git archive of HEAD


def test_tpu_backend_errors(tmp_path):
    base = ['grid', f'{TINY}:slurm', '--backend', 'tpu', '--dry-run', '--local-root', str(tmp_path)]
    assert cli.main([*base, '--root', '/shared']) == 2  # no --tpu / --zone
    assert cli.main([*base, '--tpu', 'a', '--zone', 'z', '--root', 'relative/runs']) == 2
    assert cli.main([*base, '--tpu', 'a', '--zone', 'z', '--root', '/shared', '--queued-resource']) == 2
    with pytest.raises(ValueError, match='accelerator-type'):
        tpu.Slice(('a',), 'z', queued_resource=True)


def test_tpu_points_can_live_on_gcs(tmp_path, capsys):
    """`--root gs://…`: each point's `fdx train --workdir` is a URL under it, not folded by pathlib into `gs:/…`."""
    args = ['grid', f'{TINY}:slurm', '--backend', 'tpu', '--dry-run', '--local-root', str(tmp_path)]
    assert cli.main([*args, '--tpu', 'a', '--zone', 'z', '--root', 'gs://lab-runs/fdx/', '--name', 'g']) == 0
    printed = capsys.readouterr().out
    for point in grid.expand_sweep(f'{TINY}:slurm'):
        assert f'--workdir gs://lab-runs/fdx/g/{point.point_id}' in printed


@pytest.mark.parametrize(
    'environment, arguments, expected',
    [
        ({}, (), None),
        ({}, ('10.0.0.1:1234', 2, 1), ('10.0.0.1:1234', 2, 1)),
        ({'FDX_COORDINATOR': 'h:1', 'FDX_NUM_PROCESSES': '4', 'FDX_PROCESS_ID': '3'}, (), ('h:1', 4, 3)),
        ({'TPU_WORKER_HOSTNAMES': 't0,t1,t2,t3', 'TPU_WORKER_ID': '2'}, (), ('t0:8476', 4, 2)),
        ({'TPU_WORKER_HOSTNAMES': 'only', 'TPU_WORKER_ID': '0'}, (), None),  # a single-host slice
        ({'SLURM_NTASKS': '2'}, (), ()),
        ({'SLURM_NTASKS': '1'}, (), None),
    ],
)
def test_initialize_distributed_from_the_environment(monkeypatch, environment, arguments, expected):
    for key in ('FDX_COORDINATOR', 'TPU_WORKER_HOSTNAMES', 'SLURM_NTASKS', 'FDX_COORDINATOR_PORT'):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(sharding.jax.distributed, 'initialize', lambda *a: calls.append(a))
    sharding.initialize_distributed(*arguments)
    assert calls == ([] if expected is None else [expected])
