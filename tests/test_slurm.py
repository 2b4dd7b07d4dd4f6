"""`fdx grid --backend slurm` on a REAL one-node SLURM (tests/slurm_cluster.py installs and starts it), and the job
array script it writes (also without SLURM, with test doubles for `srun` and `scontrol` on PATH)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slurm_cluster
from compilation_cache import persistent_compilation_cache

from fdx import cli, grid, slurm, train

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'tests' / 'configs' / 'tiny.py')
NO_EVAL = '--config.eval_splits=()'


def losses(workdir: Path) -> dict[int, float]:
    """The loss of every step, the last record winning (a resumed run re-logs the steps after its checkpoint)."""
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    return {r['step']: r['loss'] for r in records if 'loss' in r}


def test_array_script_runs_each_tasks_command(tmp_path):
    """The rendered script: resources as #SBATCH lines, task i runs command i under srun (quoting kept) with its
    log appended, and the pre-emption exit code requeues the task. `srun`/`scontrol` here are test doubles."""
    tasks = [
        slurm.Task(i, ['echo', f'point {i}', '--workdir', f'/w/p {i}'], tmp_path / f'p {i}' / 'slurm.log')
        for i in (0, 1, 2, 5)
    ]
    resources = slurm.Resources(
        nodes=2,
        gpus_per_node=8,
        time='1:00:00',
        partition='gpu',
        account='lab',
        sbatch=('--qos=high', '#SBATCH --exclusive'),
    )
    script = slurm.render_script('fdx-g', tasks, resources, tmp_path / '%A_%a.out', tmp_path)
    lines = script.splitlines()
    for line in (
        '#SBATCH --array=0-2,5',
        '#SBATCH --nodes=2',
        '#SBATCH --ntasks-per-node=1',
        '#SBATCH --requeue',
        '#SBATCH --open-mode=append',
        f'#SBATCH --signal=TERM@{resources.signal_seconds}',
        '#SBATCH --gpus-per-node=8',
        '#SBATCH --time=1:00:00',
        '#SBATCH --partition=gpu',
        '#SBATCH --account=lab',
        '#SBATCH --qos=high',
        '#SBATCH --exclusive',
    ):
        assert line in lines, line
    path = tmp_path / 'array.sbatch'
    path.write_text(script)
    subprocess.run(['bash', '-n', str(path)], check=True)
    doubles = tmp_path / 'bin'  # test doubles: srun runs its command, scontrol records its arguments
    doubles.mkdir()
    (doubles / 'srun').write_text('#!/bin/bash\nshift\n"$@"\nexit ${FAKE_EXIT:-0}\n')
    (doubles / 'scontrol').write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/scontrol.args\n')
    for double in doubles.iterdir():
        double.chmod(0o755)
    env = {**os.environ, 'PATH': f'{doubles}:{os.environ["PATH"]}', 'SLURM_ARRAY_JOB_ID': '7'}
    for index, exit_code in ((5, 0), (1, train.EXIT_PREEMPTED)):
        run = {'SLURM_ARRAY_TASK_ID': str(index), 'FAKE_EXIT': str(exit_code)}
        result = subprocess.run(['bash', str(path)], env={**env, **run}, capture_output=True, text=True, check=False)
        assert result.returncode == exit_code, result.stderr
        log = (tmp_path / f'p {index}' / 'slurm.log').read_text()
        assert f'point {index} --workdir /w/p {index}' in log and f'[fdx] exit {exit_code}' in log
    assert (tmp_path / 'scontrol.args').read_text().split() == ['requeue', '7_1']  # only the pre-empted task
    with pytest.raises(ValueError, match='nodes'):
        slurm.render_script('x', tasks, slurm.Resources(nodes=0), tmp_path, tmp_path)


def test_grid_resources_from_config_and_flags(capsys, tmp_path):
    args = ['grid', f'{TINY}:slurm', '--root', str(tmp_path), '--backend', 'slurm', '--dry-run']
    assert (
        cli.main(
            [
                *args,
                '--config.launch.time=2:00:00',
                '--partition',
                'debug',
                '--sbatch',
                'qos=low',
                '--sbatch=--exclusive',
            ]
        )
        == 0
    )
    script = capsys.readouterr().out
    for line in ('--time=2:00:00', '--partition=debug', '--qos=low', '--exclusive', '--array=0-2'):
        assert f'#SBATCH {line}' in script.splitlines(), line
    assert script.count('fdx.cli train --config') == 3


@pytest.fixture(scope='module')
def cluster():
    reason = slurm_cluster.unavailable()
    if reason:
        if os.environ.get('CI') == 'true':
            pytest.fail(f'SLURM must be testable in CI: {reason}')
        print(f'SLURM tests skipped: {reason}')
        pytest.skip(reason)
    slurm_cluster.start()


def test_grid_array_on_real_slurm(cluster, tmp_path, monkeypatch, capsys):
    """Three points as one array: two finish (one of them requeued mid-run resumes from its checkpoint and logs the
    losses of an uninterrupted run), the failing one is reported with its log's tail; resubmitting it alone."""
    monkeypatch.setenv('JAX_PLATFORMS', 'cpu')  # sbatch passes the submitting environment on to the tasks
    with persistent_compilation_cache(tmp_path / 'jax-cache'):
        reference = tmp_path / 'reference'
        command = [sys.executable, '-m', 'fdx.cli', 'train', '--config', TINY, NO_EVAL, '--workdir', str(reference)]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        args = ['grid', f'{TINY}:slurm', NO_EVAL, '--root', str(tmp_path), '--name', 'g']
        assert cli.main([*args, '--backend', 'slurm']) == 0
        status = json.loads((tmp_path / 'g' / grid.STATUS_FILE).read_text())
        assert status['backend'] == 'slurm' and [p['index'] for p in status['points']] == [0, 1, 2]
        job = status['points'][0]['job']
        first = Path(status['points'][0]['workdir'])
        slurm_cluster.wait_for(lambda: (first / 'config.json').is_file(), 120, 0.2, 'point 0 to start')
        assert not (first / train.DONE_FILE).exists()
        subprocess.run(['scontrol', 'requeue', f'{job}_0'], check=True)  # as a pre-emption would

        def settled():
            rows = grid.point_states(str(tmp_path), 'g')
            return rows if all(r['state'] in ('done', 'failed') for r in rows) else None

        rows = slurm_cluster.wait_for(settled, 300, 1.0, 'every point to finish or fail')
        assert [r['state'] for r in rows] == ['done', 'done', 'failed']
        assert 'no_such_optimizer' in rows[2]['log_tail']
        log = (first / grid.SLURM_LOG).read_text()
        assert 'SIGTERM received: checkpoint saved at step' in log and f'[fdx] exit {train.EXIT_PREEMPTED}' in log
        assert 'resumed from step' in log and '(restart 1)' in log
        assert losses(first) == losses(reference)

        capsys.readouterr()
        assert cli.main([*args, '--status']) == 1  # a failed point
        out = capsys.readouterr().out
        assert 'failed; log tail' in out and 'no_such_optimizer' in out and out.count(' done ') == 2

        assert cli.main([*args, '--backend', 'slurm', '--only', '002']) == 0  # the failed point alone
        again = json.loads((tmp_path / 'g' / grid.STATUS_FILE).read_text())['points']
        assert [p['job'] for p in again[:2]] == [job, job] and again[2]['job'] != job
        rows = slurm_cluster.wait_for(settled, 120, 1.0, 'the resubmitted point')
        assert [r['state'] for r in rows] == ['done', 'done', 'failed'] and rows[2]['job'] == f'{again[2]["job"]}_2'


def test_sharded_prepare_on_real_slurm(cluster, tmp_path):
    """`fdx prepare --backend slurm --shards 3`: an array of shard extractions and a merge job after them
    (`--dependency=afterok`) write the records of an unsharded run."""
    from test_prepare_cross import _records_by_key, dfdc

    src, extra, *_ = dfdc(tmp_path / 'raw')
    common = ['--frames', '2', '--crop-size', '64', '--workers', '1', *extra]
    assert cli.main(['prepare', 'dfdc', '--src', str(src), '--out', str(tmp_path / 'whole'), *common]) == 0
    out = tmp_path / 'sharded'
    assert (
        cli.main(
            ['prepare', 'dfdc', '--src', str(src), '--out', str(out), *common, '--backend', 'slurm', '--shards', '3']
        )
        == 0
    )
    jobs = json.loads((out / '_slurm' / 'jobs.json').read_text())
    assert 'afterok:' + jobs['shards'] in ' '.join(
        subprocess.run(
            ['scontrol', 'show', 'job', jobs['merge']], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    state = slurm_cluster.wait_for(
        lambda: (
            (slurm.task_states(jobs['merge']).get(0) or '') in (*slurm.FINISHED_STATES, *slurm.FAILED_STATES)
            and slurm.task_states(jobs['merge'])[0]
        ),
        300,
        1.0,
        'the merge job',
    )
    assert state == 'COMPLETED', (out / '_slurm' / 'merge.log').read_text()
    assert {i for i, s in slurm.task_states(jobs['shards']).items() if s == 'COMPLETED'} == {0, 1, 2}
    assert _records_by_key(out)[1] == _records_by_key(tmp_path / 'whole')[1]
