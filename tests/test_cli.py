"""`fdx`: every sub-command reports a configuration or input error as one line on stderr and exits 2 (`fdx.cli`)."""

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fdx import cli
from fdx import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
PANET = str(ROOT / 'experiments' / 'panet_ffpp.py')
TOY = str(ROOT / 'tests' / 'configs' / 'toy.py')


def error_line(capsys, argv: list[str]) -> str:
    """Runs `fdx ARGV` in this process; checks exit 2 and one non-empty stderr line without a traceback."""
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'fdx {argv[0]}: '), lines
    return lines[0]


def test_train_errors_name_the_key_option_or_file(capsys, tmp_path):
    workdir = ['--workdir', str(tmp_path / 'run')]
    line = error_line(capsys, ['train', '--config', PANET, '--config.optim.lrr=1', *workdir])
    assert line.startswith("fdx train: unknown config key 'optim.lrr'; did you mean optim.lr") and '--debug' in line
    line = error_line(capsys, ['train', '--config', f'{PANET}:mini,foo', *workdir])
    assert "panet_ffpp: unknown option 'foo' in 'mini,foo'; options are variant, quality" in line
    line = error_line(capsys, ['train', '--config', str(ROOT / 'experiments' / 'panet_ffp.py'), *workdir])
    assert 'config file not found' in line and line.endswith('did you mean ' + PANET + '? (--debug for the traceback)')
    with pytest.raises(SystemExit) as usage:  # argparse's usage errors are left as they are
        cli.main(['train', '--config', PANET])
    assert usage.value.code == 2 and '--workdir' in capsys.readouterr().err


def test_eval_missing_workdir_and_misspelled_key(capsys, tmp_path):
    line = error_line(capsys, ['eval', '--workdir', str(tmp_path / 'absent')])
    assert f'no config.json in {tmp_path / "absent"}: no run was started' in line
    config_lib.save_config(config_lib.load_config(TOY), tmp_path / 'run')
    line = error_line(capsys, ['eval', '--workdir', str(tmp_path / 'run'), '--config.optim.lrr=1'])
    assert line.startswith("fdx eval: unknown config key 'optim.lrr'; did you mean optim.lr")  # not quoted


def test_prepare_missing_source(capsys, tmp_path):
    line = error_line(capsys, ['prepare', 'dfdm', '--src', str(tmp_path / 'absent'), '--out', str(tmp_path / 'o')])
    assert f'{tmp_path / "absent"}: no such dataset folder' in line


def test_synth_output_is_a_file(capsys, tmp_path):
    out = tmp_path / 'synth.txt'
    out.write_text('')
    assert f'{out} is a file, not a directory; choose another --out' in error_line(capsys, ['synth', '--out', str(out)])


def test_grid_misspelled_shared_key(capsys):
    line = error_line(capsys, ['grid', TOY, '--config.optim.lrr=1', '--dry-run'])
    assert "unknown config key 'optim.lrr'; did you mean optim.lr" in line


def test_bench_missing_config_file(capsys):
    line = error_line(capsys, ['bench', 'step', '--arch', str(ROOT / 'experiments' / 'panet_ffp.py')])
    assert 'panet_ffp.py' in line and f'did you mean {PANET}?' in line


def test_crosseval_missing_grid(capsys, tmp_path):
    argv = ['crosseval', '--root', str(tmp_path), '--name', 'nogrid', '--key', 'data.quality', '--values', 'c23,c40']
    assert str(tmp_path / 'nogrid') in error_line(capsys, argv)


def _torch_save(obj):
    return lambda path: pytest.importorskip('torch').save(obj, path)


@pytest.mark.parametrize(
    'write, reason',
    [
        (lambda path: path.write_text('not weights\n'), 'not a file written by torch.save'),
        (lambda path: path.write_bytes(pickle.dumps(argparse.Namespace())), 'not a file written by torch.save'),
        (_torch_save(argparse.Namespace(lr=0.1)), 'it holds objects other than tensors'),
        (_torch_save({'net': {}, 'epoch': 3}), "2 non-tensor entries: 'net': dict, 'epoch': int"),
    ],
    ids=['text', 'plain-pickle', 'pickled-object', 'nested-dict'],
)
def test_convert_weights_refuses_what_is_not_a_state_dict(capsys, tmp_path, write, reason):
    pytest.importorskip('torch')
    src = tmp_path / 'weights.pth'
    write(src)
    line = error_line(
        capsys, ['convert-weights', '--arch', 'resnet50', '--src', str(src), '--out', str(tmp_path / 'o')]
    )
    assert f'{src}: not a plain PyTorch state dict ({reason}); fdx reads tensors only' in line
    assert 'torch.save(model.state_dict(), path)' in line and 'weights_only' not in line


@pytest.mark.parametrize('argv', [['--debug', 'train', '--config'], ['train', '--config', '--debug']])
def test_debug_shows_the_traceback(capsys, tmp_path, argv):
    assert cli.main([*argv, str(tmp_path / 'nope.py'), '--workdir', str(tmp_path / 'run')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('Traceback') and 'FileNotFoundError: config file not found' in err


def test_the_program():
    """`python -m fdx.cli` (here `grid`, quick to import): the same line, and the traceback with --debug."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    argv = [sys.executable, '-m', 'fdx.cli', 'grid', f'{TOY}:mini', '--config.optim.lrr=1', '--dry-run']
    for debug in ([], ['--debug']):
        result = subprocess.run(argv + debug, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and "unknown config key 'optim.lrr'" in lines[-1]
        assert lines[0].startswith('Traceback') if debug else len(lines) == 1, lines
