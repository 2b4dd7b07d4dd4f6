"""`launch/device_check.sh`, the GPU comparison with PyTorch, on the CPU with a narrow ResNet at 32 px: every run's
JSON and log, one table with a row per PyTorch setup, and a run that fails recorded as a row while the rest go on."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_check_runs_on_the_cpu_and_prints_one_table(tmp_path):
    fdx = tmp_path / 'fdx_tiny.py'  # `fdx` with a narrow ResNet registered beside the full-size archs
    fdx.write_text(
        textwrap.dedent("""
        import sys
        from fdx import bench, cli
        timm_kwargs = {'layers': (1, 1, 1, 1), 'channels': (16, 32, 64, 128), 'stem_width': 16}
        bench.ARCHS['tiny_resnet'] = ('resnet', {'stage_sizes': (1, 1, 1, 1), 'width': 16}, 'resnet50', timm_kwargs)
        sys.exit(cli.main(sys.argv[1:]))
        """)
    )
    env = {
        **os.environ,
        'FDX': f'{sys.executable} {fdx}',
        'ARCHS': 'tiny_resnet:32 no_such_arch:32',
        'BATCH': '2',
        'METHOD': 'tests/configs/tiny.py',
        'WARMUP': '0',
        'REPEATS': '1',
        'COMPILE_ARCHS': '',
    }
    out = tmp_path / 'check'
    script = [str(ROOT / 'launch' / 'device_check.sh'), str(out)]
    done = subprocess.run(script, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    assert (out / 'table.md').read_text() in done.stdout
    table = (out / 'table.md').read_text()
    rows = [line.split(' | ') for line in table.strip().splitlines()[2:]]
    runs = {(row[0].strip('| '), row[4]) for row in rows}
    for setup in ('eager', 'amp', 'amp+channels_last'):
        assert ('step tiny_resnet @32, batch 2', setup) in runs, table
    assert ('predict tiny_resnet @32, batch 2', 'amp+channels_last') in runs
    assert ('step tiny.py @32, batch 8', '—') in runs  # the method's own step at its batch, no PyTorch
    failed = [row for row in rows if row[1] == 'failed']
    names = [row[0].strip('| ') for row in failed]  # in the order they ran
    assert names == ['step_no_such_arch_f32', 'step_no_such_arch_bf16', 'predict_no_such_arch_bf16'], table
    assert all('config file not found: no_such_arch' in row[2] for row in failed)  # not a bad option's error
    fraction = next(row for row in rows if row[0].startswith('| step tiny_resnet') and row[4] == 'eager')[3]
    assert 'of peak' in fraction  # the f32 step measures the matmul peak
