"""`fdx results`: tables of hand-made grid folders (finished, failed, unfinished and pending points, seeds, crosseval)."""

import csv
import io
import json
import re

import numpy as np
import pytest

from fdx import cli, grid, results

CONFIG = '''
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.variant = 'a'
    c.data = ml_collections.ConfigDict({'clip': {'quality': 'c23'}})
    return c


def sweep(arg=None):
    if arg == 'seeds':
        for variant in ('a', 'b'):
            for seed in (0, 1, 2):
                yield {'variant': variant, 'seed': seed}
    elif arg == 'states':
        for variant in ('a', 'b', 'c', 'd'):
            yield {'variant': variant}
    else:
        for variant in ('a', 'b'):
            for quality in ('c23', 'c40'):
                yield {'variant': variant, 'data.clip.quality': quality}
'''


def make_grid(tmp_path, arg=None, records=()):
    """`<tmp>/runs/g` with its grid_status.json; returns (grid folder, point ids in sweep order)."""
    config = tmp_path / 'cfg.py'
    config.write_text(CONFIG)
    spec = f'{config}:{arg}' if arg else str(config)
    root = tmp_path / 'runs' / 'g'
    root.mkdir(parents=True)
    ids = [point.point_id for point in grid.expand_sweep(spec)]
    write_status(root, spec, records)
    return root, ids


def write_status(root, spec, records):
    (root / 'grid_status.json').write_text(json.dumps({'config': spec, 'points': list(records)}))


def record(root, point_id, status='finished', exit_code=None, stderr=None):
    entry = {'point_id': point_id, 'status': status, 'launch': None, 'exit_code': exit_code, 'wall_s': 1.5}
    entry['workdir'] = str(root / point_id)
    if stderr is not None:
        entry['stderr_tail'] = stderr
    return entry


def ev(auc, ci=None, acc=0.5, split='test'):
    """One eval line's `<split>/…` entries."""
    values = {f'{split}/frame/auc': auc, f'{split}/frame/acc': acc, f'{split}/video/auc': auc / 2}
    if ci:
        values[f'{split}/frame/ci/auc/low'], values[f'{split}/frame/ci/auc/high'] = ci
    return values


def finish(workdir, evals, best=None, on_test=False, done=True):
    """A trained workdir: train lines, eval lines (`evals`: step → entries), best.json and done.json."""
    workdir.mkdir(parents=True)
    lines = [{'step': 1, 'loss': 0.9, 'loss/cls': 0.7, 'lr/default': 0.1, 'train/accuracy': 0.5}]
    for step, values in evals.items():
        lines.append({'step': step, 'loss': 0.5 / step, 'loss/cls': 0.4 / step, 'lr/default': 0.05})
        lines.append({'step': step, 'val/frame/auc': 0.5 + step / 100})
        lines.append({'step': step, **values})
    (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(line) + '\n' for line in lines))
    if best is not None:
        best_record = {'step': best, 'split': 'val', 'metric': 'frame/auc', 'mode': 'max', 'value': 0.6}
        (workdir / 'best.json').write_text(json.dumps({**best_record, 'selected_on_test': on_test}))
    if done:
        (workdir / 'done.json').write_text(json.dumps({'step': max(evals, default=0)}))


def crosseval(workdir, folder, auc, ci=None, on_test=False):
    frame = {'auc': auc, 'acc': 0.5, **({'ci': {'auc': list(ci)}} if ci else {})}
    out = workdir / 'crosseval' / folder
    out.mkdir(parents=True)
    result = {'frame': frame, 'video': {'auc': auc}, 'checkpoint': {'step': 10, 'selected_on_test': on_test}}
    (out / 'metrics_test.json').write_text(json.dumps(result))


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith('|')]


def run(capsys, *argv):
    assert results.main([str(a) for a in argv]) == 0
    return capsys.readouterr()


@pytest.fixture
def grid_2x2(tmp_path):
    """variant × quality, all finished; (b, c23) has no best.json (its last eval step counts)."""
    root, ids = make_grid(tmp_path)
    write_status(root, str(tmp_path / 'cfg.py'), [record(root, i) for i in ids])
    finish(root / ids[0], {10: ev(0.9, (0.85, 0.95), acc=0.6), 20: ev(0.1, acc=0.1)}, best=10)
    finish(root / ids[1], {10: ev(0.7, acc=0.9)}, best=10)
    finish(root / ids[2], {10: ev(0.6), 20: ev(0.8, acc=0.7)})
    finish(root / ids[3], {10: ev(0.75, (0.7, 0.8), acc=0.8)}, best=10)
    return root, ids


def test_rows_by_cols_cells_and_bold_best(grid_2x2, capsys):
    root, ids = grid_2x2
    assert ids == [
        '000-variant=a,quality=c23',
        '001-variant=a,quality=c40',
        '002-variant=b,quality=c23',
        '003-variant=b,quality=c40',
    ]
    out = run(capsys, root, '--rows', 'variant', '--cols', 'quality').out
    assert table_lines(out) == [
        '| variant | quality=c23 | quality=c40 |',
        '|---|---|---|',
        '| a | **90.00** [85.00, 95.00] | 70.00 |',
        '| b | 80.00‡ | **75.00** [70.00, 80.00] |',
    ]
    assert '- ‡ no best.json (no config.select): the last evaluated step (002-variant=b,quality=c23 step 20).' in out
    assert '- test/frame/auc in %, [95% bootstrap interval] where logged; highest of each column in bold.' in out
    # the dotted key works the same; rows and columns swap; another metric
    assert table_lines(run(capsys, root, '--rows', 'variant', '--cols', 'data.clip.quality').out) == table_lines(out)
    assert table_lines(run(capsys, root, '--rows', 'quality', '--cols', 'variant', '--metric', 'frame/acc').out) == [
        '| quality | variant=a | variant=b |',
        '|---|---|---|',
        '| c23 | 60.00 | 70.00‡ |',
        '| c40 | **90.00** | **80.00** |',
    ]


def test_default_one_row_per_point(grid_2x2, capsys, tmp_path):
    root, _ = grid_2x2
    out = tmp_path / 'table.md'
    printed = run(capsys, tmp_path / 'runs', '--out', out).out  # a folder holding grids
    assert printed == f'wrote {out}\n'
    assert table_lines(out.read_text()) == [
        '| variant | quality | test frame/auc |',
        '|---|---|---|',
        '| a | c23 | **90.00** [85.00, 95.00] |',
        '| a | c40 | 70.00 |',
        '| b | c23 | 80.00‡ |',
        '| b | c40 | 75.00 [70.00, 80.00] |',
    ]
    lines = table_lines(run(capsys, root, '--metric', 'video/auc').out)
    assert lines[0] == '| variant | quality | test video/auc |' and lines[2] == '| a | c23 | **45.00** |'


def states_grid(tmp_path):
    """a finished, b failed, c unfinished (running: no status record yet), d pending."""
    root, ids = make_grid(tmp_path, 'states')
    stderr = 'Traceback (most recent call last):\n  File "x.py"\nValueError: boom\n\n'
    write_status(
        root,
        f'{tmp_path / "cfg.py"}:states',
        [record(root, ids[0]), record(root, ids[1], 'failed', 1, stderr)],
    )
    finish(root / ids[0], {10: ev(0.8, (0.75, 0.85))}, best=10)
    (root / ids[1]).mkdir()
    (root / ids[1] / 'metrics.jsonl').write_text('{"step": 1, "loss": 3.0}\n')
    finish(root / ids[2], {}, done=False)
    with open(root / ids[2] / 'metrics.jsonl', 'a') as f:
        f.write('{"step": 7, "loss": 0.4}\n{"step": 8, "lo')  # a line being written
    return root, ids


def test_failed_unfinished_and_pending_points_markdown(tmp_path, capsys):
    root, ids = states_grid(tmp_path)
    assert ids == ['000-variant=a', '001-variant=b', '002-variant=c', '003-variant=d']
    out = run(capsys, root).out
    assert table_lines(out) == [
        '| variant | test frame/auc |',
        '|---|---|',
        '| a | 80.00 [75.00, 85.00] |',
        '| b | failed (exit 1) |',
        '| c | unfinished (step 7) |',
        '| d | pending |',
    ]
    assert '- g/001-variant=b failed (exit 1): ValueError: boom' in out
    assert '- unfinished: running, or stopped before done.json (fdx grid resumes it).' in out
    assert '- pending: not started (no workdir).' in out


def test_failed_unfinished_and_pending_points_csv(tmp_path, capsys):
    root, _ = states_grid(tmp_path)
    printed = run(capsys, root, '--format', 'csv')
    assert 'ValueError: boom' in printed.err  # the notes: stdout stays a clean CSV
    rows = list(csv.reader(io.StringIO(printed.out)))
    assert rows == [
        ['variant', 'test frame/auc', 'test frame/auc ci low', 'test frame/auc ci high', 'state', 'detail'],
        ['a', '80.0000', '75.0000', '85.0000', 'finished', ''],
        ['b', '', '', '', 'failed', '001-variant=b: exit 1: ValueError: boom'],
        ['c', '', '', '', 'unfinished', '002-variant=c: unfinished (step 7)'],
        ['d', '', '', '', 'pending', ''],
    ]
    out = tmp_path / 'r.csv'
    run(capsys, root, '--format', 'csv', '--out', out)
    assert out.read_text() == printed.out


def test_seeds_merged_into_mean_std(tmp_path, capsys):
    root, ids = make_grid(tmp_path, 'seeds')
    assert ids[3:] == ['003-variant=b,seed=0', '004-variant=b,seed=1', '005-variant=b,seed=2']
    failed = record(root, ids[5], 'failed', 3, 'non-finite loss at step 4\n')
    write_status(root, f'{tmp_path / "cfg.py"}:seeds', [record(root, i) for i in ids[:5]] + [failed])
    for point_id, auc in zip(ids, (0.8, 0.9, 0.85, 0.7, 0.8)):
        finish(root / point_id, {10: ev(auc, (auc - 0.1, auc + 0.1))}, best=10)
    out = run(capsys, root).out
    assert table_lines(out) == [
        '| variant | test frame/auc |',
        '|---|---|',
        '| a | **85.00 ± 5.00** (3 seeds) |',
        '| b | 75.00 ± 7.07 (2 of 3 seeds; 1 failed) |',
    ]
    assert '- mean ± std (n seeds): sample standard deviation over points differing only in seed.' in out
    rows = list(csv.reader(io.StringIO(run(capsys, root, '--format', 'csv').out)))
    assert rows == [
        ['variant', 'test frame/auc', 'test frame/auc std', 'test frame/auc seeds', 'state', 'detail'],
        ['a', '85.0000', '5.0000', '3', 'finished', ''],
        [
            'b',
            '75.0000',
            '7.0711',
            '2',
            '2 finished, 1 failed',
            '005-variant=b,seed=2: exit 3: non-finite loss at step 4',
        ],
    ]
    # seed named as a row key: no merging, one row per point
    lines = table_lines(run(capsys, root, '--rows', 'variant,seed').out)
    assert lines[0] == '| variant | seed | test frame/auc |' and len(lines) == 8
    assert lines[3] == '| a | 1 | **90.00** [80.00, 100.00] |' and lines[7] == '| b | 2 | failed (exit 3) |'


def test_selected_on_test_marked(tmp_path, capsys):
    root, ids = make_grid(tmp_path, 'states')
    finish(root / ids[0], {10: ev(0.8)}, best=10, on_test=True)
    finish(root / ids[1], {10: ev(0.7)}, best=10)
    out = run(capsys, root).out
    assert table_lines(out)[2:4] == ['| a | **80.00**† |', '| b | 70.00 |']
    assert '- † checkpoint selected on the test split: its test figures are optimistic.' in out
    assert '‡' not in out
    tex = run(capsys, root, '--format', 'tex').out
    assert r'a & \textbf{80.00}$^\dagger$ \\' in tex


def test_crosseval_columns(tmp_path, capsys):
    root, ids = make_grid(tmp_path, 'states')
    finish(root / ids[0], {10: ev(0.8)}, best=10)
    finish(root / ids[1], {10: ev(0.85)}, best=10)
    crosseval(root / ids[0], 'celebdf-best', 0.6, (0.55, 0.65))
    crosseval(root / ids[0], 'celebdf', 0.1)  # the latest checkpoint's: the best one's wins
    crosseval(root / ids[1], 'celebdf', 0.65, on_test=True)
    crosseval(root / ids[1], 'dfdc', 0.7)
    out = run(capsys, root).out
    assert table_lines(out) == [
        '| variant | test frame/auc | celebdf | dfdc |',
        '|---|---|---|---|',
        '| a | 80.00 | 60.00 [55.00, 65.00] | – |',
        '| b | **85.00** | **65.00**† | 70.00 |',
        '| c | pending | pending | pending |',
        '| d | pending | pending | pending |',
    ]
    assert '- celebdf, dfdc: evaluated by fdx crosseval on that value (crosseval/<value>/).' in out
    assert table_lines(run(capsys, root, '--cols', 'crosseval').out)[:4] == [
        '| variant | celebdf | dfdc |',
        '|---|---|---|',
        '| a | 60.00 [55.00, 65.00] | – |',
        '| b | **65.00**† | 70.00 |',
    ]


def test_tex_is_well_formed(grid_2x2, capsys):
    root, _ = grid_2x2
    tex = run(capsys, root, '--rows', 'variant', '--cols', 'quality', '--format', 'tex').out
    lines = tex.splitlines()
    assert lines[:4] == [r'\begin{tabular}{lcc}', r'\hline', r'variant & quality=c23 & quality=c40 \\', r'\hline']
    assert lines[4:6] == [
        r'a & \textbf{90.00} [85.00, 95.00] & 70.00 \\',
        r'b & 80.00$^\ddagger$ & \textbf{75.00} [70.00, 80.00] \\',
    ]
    assert lines[6:8] == [r'\hline', r'\end{tabular}']
    body = re.sub(r'\\[{}%_&$#]', '', tex)  # escaped characters
    assert body.count('{') == body.count('}')
    depth = 0
    for char in body:
        depth += {'{': 1, '}': -1}.get(char, 0)
        assert depth >= 0
    assert '%' not in body and '_' not in body  # every % and _ escaped
    assert tex.count(r'\begin{') == tex.count(r'\end{') == 1
    assert all(line.count('&') == 2 and line.endswith(r' \\') for line in lines[2:6] if line != r'\hline')
    assert r'{\footnotesize test/frame/auc in \%, [95\% bootstrap interval] where logged;' in tex


def test_plots_written(grid_2x2, capsys, tmp_path):
    root, ids = grid_2x2
    plots = tmp_path / 'plots'
    out = run(capsys, root, '--plots', plots).out
    assert 'ROC: no saved curve data' in out and not (plots / 'roc_test.png').exists()
    for name in ('training_curves.png', 'table.png'):
        data = (plots / name).read_bytes()
        assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 2000, name
        assert f'wrote {plots / name}' in out
    roc = root / ids[0] / 'eval' / 'best_10'
    roc.mkdir(parents=True)
    np.savez(roc / 'roc_test_frame.npz', fpr=np.array([0.0, 0.1, 1.0]), tpr=np.array([0.0, 0.8, 1.0]))
    out = run(capsys, root, '--plots', plots).out
    assert f'wrote {plots / "roc_test.png"}' in out
    assert (plots / 'roc_test.png').read_bytes().startswith(b'\x89PNG')
    printed = run(capsys, root, '--format', 'csv', '--plots', plots)  # a printed CSV stays clean
    assert next(csv.reader(io.StringIO(printed.out)))[:3] == ['variant', 'quality', 'test frame/auc']
    assert f'wrote {plots / "table.png"}' in printed.err and 'wrote' not in printed.out


def test_bad_root_and_bad_key(grid_2x2, tmp_path, capsys):
    root, _ = grid_2x2
    empty = tmp_path / 'empty'
    empty.mkdir()
    for bad in (empty, tmp_path / 'missing'):
        with pytest.raises(ValueError, match=f'^{re.escape(str(bad))}: no (such folder|grid in it)'):
            results.main([str(bad)])
    with pytest.raises(
        ValueError, match=r'--rows varaint: not a swept key; the swept keys are variant, data\.clip\.quality$'
    ):
        results.main([str(root), '--rows', 'varaint'])
    with pytest.raises(ValueError, match=r'--cols qual: not a swept key; .*variant, data\.clip\.quality, or crosseval'):
        results.main([str(root), '--cols', 'qual'])
    with pytest.raises(ValueError, match='--cols crosseval: no point has cross evaluations'):
        results.main([str(root), '--cols', 'crosseval'])
    # one line through the CLI
    assert cli.main(['results', str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'fdx results: {empty}: ') and err.count('\n') == 1


def test_colliding_rows_are_an_error(grid_2x2):
    root, _ = grid_2x2
    with pytest.raises(
        ValueError, match=r'fall in one cell \(variant=a, test frame/auc\) but differ in data\.clip\.quality'
    ):
        results.main([str(root), '--rows', 'variant'])


def test_config_that_no_longer_imports(tmp_path, capsys):
    root = tmp_path / 'runs' / 'old'
    root.mkdir(parents=True)
    write_status(root, str(tmp_path / 'gone.py:x'), [record(root, '000-lr=0.1'), record(root, '001-lr=1', 'failed', 2)])
    finish(root / '000-lr=0.1', {5: ev(0.66)})
    finish(root / '002-lr=10', {}, done=False)  # launched after the last status write
    out = run(capsys, root).out
    assert table_lines(out) == [
        '| point_id | test frame/auc |',
        '|---|---|',
        '| 000-lr=0.1 | 66.00‡ |',
        '| 001-lr=1 | failed (exit 2) |',
        '| 002-lr=10 | unfinished (step 1) |',
    ]
    assert f"- grid old: its config '{tmp_path / 'gone.py:x'}' does not expand (config file not found" in out


def test_attribution_defaults_to_accuracy_and_cli(tmp_path, capsys):
    root, ids = make_grid(tmp_path, 'states')
    for point_id, acc in zip(ids[:2], (0.4, 0.6)):
        finish(root / point_id, {10: {'test/frame/acc': acc, 'test/frame/per_class_acc/FS': acc}}, best=10)
    assert cli.main(['results', str(root)]) == 0
    out = capsys.readouterr().out
    assert table_lines(out)[:4] == ['| variant | test frame/acc |', '|---|---|', '| a | 40.00 |', '| b | **60.00** |']
