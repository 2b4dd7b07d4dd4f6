"""Results tables of grids: every point's metric, state and cross-dataset evaluations, in markdown, CSV or LaTeX.

    fdx results runs/xception_ffpp-table2 [more grid folders, or folders holding grids …]
    fdx results runs --rows variant --cols data.clip.quality [--metric frame/auc] [--split test]
    fdx results runs/g [--cols crosseval] [--format md|csv|tex] [--out FILE] [--plots DIR]

Reads, per grid folder `<root>/<name>/` (a ROOT is one, or a folder holding several): `grid_status.json` (the
config spec and the outcome of each launched point) and the spec's `sweep()` re-expanded by `fdx.grid.expand_sweep`,
so points never started are listed too (where the config file no longer expands, the points of `grid_status.json`
and the point folders beside it, named by id). Per point workdir: `done.json` (finished), `best.json` (the step whose
metrics are shown; without it the last evaluated step, said in a note), `metrics.jsonl` (the `<split>/<metric>`
entries at that step and their bootstrap interval `<split>/<level>/ci/<name>/low|high`) and
`crosseval/<value>[-best]/metrics_<split>.json` written by `fdx crosseval` (one extra column per value).

Prints (or writes to `--out`) one table: by default one row per point, labelled by every swept key that varies, and
one column for the metric (`--metric`, the path after the split: default `frame/auc`, or `frame/acc` for attribution
runs, which log `per_class_acc`) plus the cross-evaluation columns; `--rows KEY[,KEY]` and `--cols KEY` (a dotted
swept key or its last component; `--cols crosseval`: only the cross-evaluation columns) make a rows × columns table.
Values are percentages with their 95% interval `[lo, hi]`; points differing only in `seed` are merged into
mean ± std with their number of seeds; the best value of each column is bold (md, tex; csv has plain numbers and a
state column). No point is left out: a failed point shows its exit code (its last stderr line in a note), an
unfinished one (running, or stopped before `done.json`) its last logged step, one never started `pending`.
Marks: † checkpoint selected on the test split, ‡ no `best.json` (last evaluated step).

`--plots DIR` writes `training_curves.png` (loss terms, `train/*`, learning rate and the selection metric of every
point over steps), `table.png` (the table as an image) and `roc_<split>.png`, the frame-level ROC curves of every
point that has them (`eval/*/roc_<split>_frame.npz`, written by `fdx eval` and the trainer's evaluations; runs
from before that are skipped with a note).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdx import metrics
from fdx.config import split_spec
from fdx.grid import DONE_FILE, SLURM_LOG, STATUS_FILE, expand_sweep, slurm_log_exit
from fdx.slurm import EXIT_PREEMPTED

BEST_FILE = 'best.json'  # `fdx.state.BEST_FILE` (fdx.state is not imported: it loads jax and orbax)
METRICS_FILE = 'metrics.jsonl'
SEED = 'seed'
CROSSEVAL = 'crosseval'
POINT_KEY = 'point_id'  # the only "swept key" of points whose overrides are unknown
ON_TEST, LAST_EVAL = '†', '‡'
STATES = ('finished', 'failed', 'unfinished', 'pending')
MISSING = '–'
FORMATS = ('md', 'csv', 'tex')


@dataclass
class PointResult:
    """One grid point: where it stands and, when finished, the metrics of its selected checkpoint."""

    grid: str
    point_id: str
    overrides: dict[str, Any]
    workdir: Path
    state: str = 'pending'  # one of STATES
    exit_code: int | None = None  # failed
    stderr_line: str = ''  # failed: the last line of its stderr tail
    step: int | None = None  # finished: the step of `values`; unfinished: the last logged step
    values: dict[str, float] = field(default_factory=dict)  # `<split>/` entries of metrics.jsonl, split removed
    from_best: bool = False
    selected_on_test: bool = False
    crosseval: dict[str, dict] = field(default_factory=dict)  # value → its metrics_<split>.json

    @property
    def name(self) -> str:
        return f'{self.grid}/{self.point_id}'


@dataclass(frozen=True)
class Column:
    header: str
    kind: str  # 'metric' (the point's own split), 'crosseval' (a cross-evaluated value) or 'key' (a swept value)
    value: str = ''


@dataclass
class Cell:
    number: str = ''  # the figure (bold when best), '' when there is none
    suffix: str = ''  # interval, seed count, marks; or the state text when there is no figure
    mean: float | None = None
    std: float | None = None
    seeds: int = 0  # points behind `mean` when several were merged
    ci: tuple[float, float] | None = None
    state: str = ''  # 'finished', or e.g. '2 finished, 1 failed'
    bold: bool = False

    @property
    def text(self) -> str:
        return self.number + self.suffix


@dataclass
class Table:
    label_headers: list[str]
    columns: list[Column]
    labels: list[tuple[str, ...]]
    cells: list[list[Cell]]
    states: list[str]
    details: list[str]
    notes: list[str]
    points: list[PointResult]


# --------------------------------------------------------------------------- #
# Reading grids
# --------------------------------------------------------------------------- #


def _read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or (being written) unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a `metrics.jsonl` that carry a step (a line being written is skipped)."""
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get('step'), (int, float)):
            rows.append(row)
    return rows


def split_values(rows: list[dict], split: str, step: int | None = None) -> tuple[int | None, dict[str, float]]:
    """(step, the `<split>/…` entries logged at it, prefix removed); `step` None: the last step that has any."""
    prefix = f'{split}/'
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
        if values:
            by_step.setdefault(int(row['step']), {}).update(values)  # a resumed run's later line wins
    if step is None:
        step = max(by_step, default=None)
    return step, by_step.get(step, {})


def _crosseval_results(workdir: Path, split: str) -> dict[str, dict]:
    """value → `crosseval/<value>[-best]/metrics_<split>.json` (the best checkpoint's where both exist)."""
    found: dict[str, dict] = {}
    for path in sorted((workdir / CROSSEVAL).glob(f'*/metrics_{split}.json')):
        result = _read_json(path)
        folder = path.parent.name
        value = folder.removesuffix('-best')
        if isinstance(result, dict) and (value not in found or folder.endswith('-best')):
            found[value] = result
    return found


def load_point(grid: str, point_id: str, overrides: dict, grid_dir: Path, record: dict | None, split: str):
    """A point's state from its workdir and its `grid_status.json` record (None: not launched by the grid yet)."""
    workdir = grid_dir / point_id
    if not workdir.is_dir() and record and record.get('workdir') and Path(record['workdir']).is_dir():
        workdir = Path(record['workdir'])
    point = PointResult(grid, point_id, overrides, workdir)
    if (workdir / DONE_FILE).is_file():
        point.state = 'finished'
        rows = read_metrics(workdir / METRICS_FILE)
        best = _read_json(workdir / BEST_FILE)
        if isinstance(best, dict) and isinstance(best.get('step'), int):
            point.from_best, point.selected_on_test = True, bool(best.get('selected_on_test'))
            point.step, point.values = split_values(rows, split, best['step'])
        else:
            point.step, point.values = split_values(rows, split)
        point.crosseval = _crosseval_results(workdir, split)
    elif record and record.get('status') == 'failed':
        point.state, point.exit_code = 'failed', record.get('exit_code')
        lines = [line.strip() for line in (record.get('stderr_tail') or '').splitlines() if line.strip()]
        point.stderr_line = lines[-1] if lines else ''
    elif (
        record
        and record.get('job')
        and (ended := slurm_log_exit(workdir / SLURM_LOG))
        and ended[0] not in (0, EXIT_PREEMPTED)
    ):
        point.state, (point.exit_code, point.stderr_line) = 'failed', ended  # a SLURM task ended badly (75: requeued)
    elif workdir.is_dir():
        point.state = 'unfinished'
        steps = [int(row['step']) for row in read_metrics(workdir / METRICS_FILE)]
        point.step = max(steps, default=None)
    return point


def find_grids(roots: Sequence[str | Path]) -> list[Path]:
    """The grid folders (holding `grid_status.json`) that are the roots or lie directly inside them."""
    grids: list[Path] = []
    for root in map(Path, roots):
        if (root / STATUS_FILE).is_file():
            found = [root]
        else:
            found = sorted(p.parent for p in root.glob(f'*/{STATUS_FILE}')) if root.is_dir() else []
        if not root.is_dir():
            raise ValueError(f'{root}: no such folder (give a grid folder <root>/<name>, or a folder of grids)')
        if not found:
            raise ValueError(
                f'{root}: no grid in it (no {STATUS_FILE} here or in a folder inside it); give a grid folder '
                f'<root>/<name> run by fdx grid --backend local, or the folder holding such grids'
            )
        grids += [grid for grid in found if grid not in grids]
    return grids


def _one_line(error: BaseException) -> str:
    text = ' '.join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + '...'


def _expand(spec: Any, grid_dir: Path) -> list[tuple[str, dict]]:
    """The sweep's (point id, overrides); a relative config path is also tried from the folder above `--root`."""
    if not isinstance(spec, str):
        raise TypeError(f'{STATUS_FILE} names no config spec')  # caught: the grid falls back to point ids
    path, arg = split_spec(spec)
    if not path.is_file() and not path.is_absolute() and (grid_dir.parent.parent / path).is_file():
        spec = str(grid_dir.parent.parent / path) + (f':{arg}' if arg else '')
    return [(point.point_id, dict(point.overrides)) for point in expand_sweep(spec)]


def load_grid(grid_dir: Path, label: str, split: str) -> tuple[list[PointResult], list[str]]:
    """Every point of one grid (sweep order, then points the sweep no longer has), and notes about the grid."""
    status = _read_json(grid_dir / STATUS_FILE)
    if not isinstance(status, dict):
        raise ValueError(  # noqa: TRY004 -- a user's file: fdx.cli reports ValueError in one line
            f'{grid_dir / STATUS_FILE}: not a grid status (a JSON object with "config" and "points")'
        )
    spec = status.get('config')
    records = {r['point_id']: r for r in status.get('points') or [] if isinstance(r, dict) and 'point_id' in r}
    notes = []
    try:
        expanded = _expand(spec, grid_dir)
    except Exception as error:  # noqa: BLE001 -- any error of a user's config file: fall back to the point ids
        expanded = []
        notes.append(
            f'grid {label}: its config {spec!r} does not expand ({_one_line(error)}); its rows are the point ids of '
            f'{STATUS_FILE} and of the point folders'
        )
    known = {point_id for point_id, _ in expanded}
    extra = [point_id for point_id in records if point_id not in known]
    extra += sorted(
        p.name
        for p in grid_dir.iterdir()
        if p.is_dir()
        and p.name not in known
        and p.name not in records
        and any((p / name).exists() for name in (DONE_FILE, METRICS_FILE, 'config.json'))
    )
    if expanded and extra:
        notes.append(f'grid {label}: {", ".join(extra)} not in the sweep of {spec} (any more)')
    points = expanded + [(point_id, {POINT_KEY: point_id}) for point_id in extra]
    return [load_point(label, pid, ov, grid_dir, records.get(pid), split) for pid, ov in points], notes


def collect(roots: Sequence[str | Path], split: str) -> tuple[list[PointResult], list[str]]:
    """Every point of every grid under `roots`, and notes about the grids."""
    grids = find_grids(roots)
    names = [grid.name for grid in grids]
    points, notes = [], []
    for grid, name in zip(grids, names):
        grid_points, grid_notes = load_grid(grid, name if names.count(name) == 1 else str(grid), split)
        points += grid_points
        notes += grid_notes
    return points, notes


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #


def _render(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f'{value:g}'
    return value if isinstance(value, str) else str(value)


def _leaf(key: str) -> str:
    return key.rsplit('.', 1)[-1]


def resolve_key(option: str, name: str, keys: Sequence[str]) -> str:
    """The swept key named `name` (dotted, or its last component)."""
    if name in keys:
        return name
    matches = [key for key in keys if _leaf(key) == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f'{option} {name}: several swept keys end so ({", ".join(matches)}); give the dotted key')
    extra = ', or crosseval' if option == '--cols' else ''
    raise ValueError(f'{option} {name}: not a swept key; the swept keys are {", ".join(keys) or "(none)"}{extra}')


def _header(key: str, keys: Sequence[str]) -> str:
    """A key's last component, or the dotted key where that is ambiguous."""
    return _leaf(key) if sum(_leaf(k) == _leaf(key) for k in keys) == 1 else key


def default_metric(points: Sequence[PointResult]) -> str:
    """`frame/acc` for attribution runs (they log per-class accuracies), else `frame/auc`."""
    attribution = any(
        '/per_class_acc/' in key or key.startswith('per_class_acc')
        for point in points
        for source in (point.values, *(_flatten(r) for r in point.crosseval.values()))
        for key in source
    )
    return 'frame/acc' if attribution else 'frame/auc'


def _flatten(result: dict, prefix: str = '') -> dict[str, Any]:
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}/'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def _lower_is_better(metric: str) -> bool:
    return _leaf(metric) == 'eer' or 'loss' in metric


@dataclass(frozen=True)
class _Measure:
    value: float
    ci: tuple[float, float] | None
    on_test: bool
    last_eval: bool


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def measure(point: PointResult, column: Column, metric: str) -> _Measure | None:
    """The figure of a finished point in a column (None where there is none)."""
    if point.state != 'finished':
        return None
    level, _, rest = metric.partition('/')
    if column.kind == 'crosseval':
        result = point.crosseval.get(column.value)
        if result is None:
            return None
        value = result
        for part in metric.split('/'):
            value = value.get(part) if isinstance(value, dict) else None
        interval = ((result.get(level) or {}).get('ci') or {}).get(rest) if rest else None
        on_test = bool((result.get('checkpoint') or {}).get('selected_on_test'))
        last_eval = False
    else:
        value = point.values.get(metric)
        low, high = point.values.get(f'{level}/ci/{rest}/low'), point.values.get(f'{level}/ci/{rest}/high')
        interval = (low, high) if rest and low is not None and high is not None else None
        on_test, last_eval = point.selected_on_test, not point.from_best
    value = _number(value)
    if value is None or not math.isfinite(value):
        return None
    ci = None
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(_number(v) is not None for v in interval):
        ci = (float(interval[0]), float(interval[1]))
    return _Measure(value, ci, on_test, last_eval)


def _pct(value: float) -> str:
    return f'{100 * value:.2f}'


def _state_text(point: PointResult) -> str:
    if point.state == 'failed':
        return f'failed (exit {point.exit_code})' if point.exit_code is not None else 'failed'
    if point.state == 'unfinished':
        return f'unfinished (step {point.step})' if point.step is not None else 'unfinished (no step logged)'
    return MISSING if point.state == 'finished' else point.state


def _state_summary(points: Sequence[PointResult]) -> str:
    return points[0].state if len({point.state for point in points}) == 1 else _counts(points)


def _counts(points: Sequence[PointResult]) -> str:
    counts = Counter(point.state for point in points)
    return ', '.join(f'{counts[state]} {state}' for state in STATES if counts[state])


def make_cell(points: Sequence[PointResult], column: Column, metric: str) -> Cell:
    """One cell: the figure of one point, the mean ± std of several seeds, or the points' state."""
    measured = [(point, m) for point in points if (m := measure(point, column, metric)) is not None]
    cell = Cell(state=_state_summary(points))
    if not measured:
        cell.suffix = _state_text(points[0]) if len(points) == 1 else _counts(points)
        return cell
    marks = (ON_TEST if any(m.on_test for _, m in measured) else '') + (
        LAST_EVAL if any(m.last_eval for _, m in measured) else ''
    )
    values = [m.value for _, m in measured]
    if len(points) == 1:
        cell.mean, cell.ci = values[0], measured[0][1].ci
        cell.number = _pct(cell.mean)
        cell.suffix = (f' [{_pct(cell.ci[0])}, {_pct(cell.ci[1])}]' if cell.ci else '') + marks
        return cell
    cell.seeds = len(values)
    others = Counter(
        point.state if point.state != 'finished' else 'without the metric'
        for point in points
        if all(point is not p for p, _ in measured)
    )
    if len(values) == 1:
        cell.mean, cell.number = values[0], _pct(values[0])
    else:
        cell.mean, cell.std = metrics.mean_std(values)
        cell.number = metrics.format_mean_std(cell.mean, cell.std)
    missing = ', '.join(f'{count} {state}' for state, count in others.items())
    count = f'{len(values)} seeds' if not others else f'{len(values)} of {len(points)} seeds; {missing}'
    cell.suffix = f' ({count}){marks}'
    return cell


def _group_key(point: PointResult, merge_seeds: bool) -> tuple:
    items = sorted((k, _render(v)) for k, v in point.overrides.items() if not (merge_seeds and k == SEED))
    return point.grid, tuple(items)


def _check_cell(points: Sequence[PointResult], merge_seeds: bool, where: str) -> None:
    """The points of one cell must be one experiment (seeds of it at most)."""
    if len({_group_key(point, merge_seeds) for point in points}) <= 1:
        return
    keys = dict.fromkeys(k for point in points for k in point.overrides if not (merge_seeds and k == SEED))
    differ = [k for k in keys if len({_render(point.overrides.get(k)) for point in points}) > 1]
    raise ValueError(
        f'{points[0].point_id} and {points[1].point_id} fall in one cell ({where}) but differ in '
        f'{", ".join(differ)}; add {differ[0] if differ else "the key"} to --rows'
    )


def build_table(
    points: Sequence[PointResult],
    split: str = 'test',
    metric: str | None = None,
    rows: str | None = None,
    cols: str | None = None,
    grid_notes: Sequence[str] = (),
) -> Table:
    """The table of `points` (see the module docstring for `rows`, `cols` and `metric`)."""
    if not points:
        raise ValueError('no grid point to tabulate')
    metric = metric or default_metric(points)
    keys = list(dict.fromkeys(k for point in points for k in point.overrides))
    col_key = None if cols in (None, CROSSEVAL) else resolve_key('--cols', cols, keys)
    if rows:
        row_keys = [resolve_key('--rows', name.strip(), keys) for name in rows.split(',') if name.strip()]
    else:
        varying = [k for k in keys if len({_render(point.overrides.get(k)) for point in points}) > 1]
        row_keys = [k for k in varying if k not in (SEED, col_key)]
    merge_seeds = SEED not in (*row_keys, col_key)
    grids = list(dict.fromkeys(point.grid for point in points))
    show_grid = len(grids) > 1 or not row_keys
    label_headers = (['grid'] if show_grid else []) + [_header(k, keys) for k in row_keys]

    def label(point: PointResult) -> tuple[str, ...]:
        return ((point.grid,) if show_grid else ()) + tuple(_render(point.overrides.get(k)) for k in row_keys)

    crossevals = list(dict.fromkeys(value for point in points for value in point.crosseval))
    if col_key is not None:
        values = list(dict.fromkeys(_render(point.overrides.get(col_key)) for point in points))
        columns = [Column(f'{_header(col_key, keys)}={value}', 'key', value) for value in values]
    elif cols == CROSSEVAL:
        if not crossevals:
            raise ValueError(
                f'--cols crosseval: no point has cross evaluations (<workdir>/crosseval/<value>/metrics_{split}.json, '
                f'written by fdx crosseval)'
            )
        columns = [Column(value, 'crosseval', value) for value in crossevals]
    else:
        columns = [Column(f'{split} {metric}', 'metric')] + [Column(v, 'crosseval', v) for v in crossevals]

    grouped: dict[tuple[str, ...], list[PointResult]] = {}
    for point in points:
        grouped.setdefault(label(point), []).append(point)
    labels, cells, states, details = [], [], [], []
    for row_label, members in grouped.items():
        where = ', '.join(f'{h}={v}' for h, v in zip(label_headers, row_label)) or 'the only row'
        row_cells, row_states = [], []
        for column in columns:
            if column.kind == 'key':
                in_cell = [p for p in members if _render(p.overrides.get(col_key)) == column.value]
            else:
                in_cell = members
            _check_cell(in_cell, merge_seeds, f'{where}, {column.header}')
            row_cells.append(make_cell(in_cell, column, metric) if in_cell else Cell(suffix=MISSING))
            row_states.append((column.value, _state_summary(in_cell) if in_cell else ''))
        if col_key is None or len({s for _, s in row_states if s}) == 1:
            states.append(_state_summary(members))
        else:
            states.append('; '.join(f'{value}: {s}' for value, s in row_states if s))
        labels.append(row_label)
        cells.append(row_cells)
        details.append('; '.join(filter(None, (_detail(p) for p in members))))

    lower = _lower_is_better(metric)
    for j in range(len(columns)):
        figures = [(i, round(100 * row[j].mean, 2)) for i, row in enumerate(cells) if row[j].mean is not None]
        if len(figures) > 1:
            best = (min if lower else max)(value for _, value in figures)
            for i, value in figures:
                cells[i][j].bold = value == best
    notes = _notes(points, cells, columns, split, metric, lower) + list(grid_notes)
    return Table(label_headers, columns, labels, cells, states, details, notes, list(points))


def _detail(point: PointResult) -> str:
    if point.state == 'failed':
        code = f'exit {point.exit_code}' if point.exit_code is not None else 'failed'
        return f'{point.point_id}: {code}' + (f': {point.stderr_line}' if point.stderr_line else '')
    if point.state == 'unfinished':
        return f'{point.point_id}: {_state_text(point)}'
    flags = []
    if point.state == 'finished' and point.selected_on_test:
        flags.append('selected on test')
    if point.state == 'finished' and not point.from_best:
        flags.append(f'last evaluated step {point.step} (no best.json)')
    return f'{point.point_id}: {", ".join(flags)}' if flags else ''


def _notes(points, cells, columns, split, metric, lower) -> list[str]:
    texts = [cell.text for row in cells for cell in row]
    notes = [
        (
            f'{split}/{metric} in %, [95% bootstrap interval] where logged; '
            f'{"lowest" if lower else "highest"} of each column in bold.'
        )
    ]
    cross = [column.value for column in columns if column.kind == 'crosseval']
    if cross:
        notes.append(f'{", ".join(cross)}: evaluated by fdx crosseval on that value (crosseval/<value>/).')
    if any(' seeds' in text for text in texts):
        notes.append('mean ± std (n seeds): sample standard deviation over points differing only in seed.')
    if any(ON_TEST in text for text in texts):
        notes.append(f'{ON_TEST} checkpoint selected on the test split: its test figures are optimistic.')
    if any(LAST_EVAL in text for text in texts):
        steps = ', '.join(
            f'{p.point_id} step {p.step}' for p in points if p.state == 'finished' and not p.from_best and p.values
        )
        notes.append(f'{LAST_EVAL} no best.json (no config.select): the last evaluated step ({steps}).')
    for point in points:
        if point.state == 'failed':
            notes.append(f'{point.name} failed (exit {point.exit_code}): {point.stderr_line or "no stderr"}')
    states = Counter(point.state for point in points)
    if states['unfinished']:
        notes.append('unfinished: running, or stopped before done.json (fdx grid resumes it).')
    if states['pending']:
        notes.append('pending: not started (no workdir).')
    if any(column.kind != 'crosseval' for column in columns):
        for point in points:
            if point.state == 'finished' and metric not in point.values:
                where = f'at step {point.step}' if point.step is not None else f'(no {split} evaluation logged)'
                notes.append(f'{point.name}: no {split}/{metric} in metrics.jsonl {where}.')
    return notes


# --------------------------------------------------------------------------- #
# Formats
# --------------------------------------------------------------------------- #


def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace('|', '\\|')

    def cell(c: Cell) -> str:
        return esc(f'**{c.number}**{c.suffix}' if c.bold else c.text)

    header = table.label_headers + [column.header for column in table.columns]
    lines = ['| ' + ' | '.join(map(esc, header)) + ' |', '|' + '---|' * len(header)]
    for label, row in zip(table.labels, table.cells):
        lines.append('| ' + ' | '.join([*map(esc, label), *map(cell, row)]) + ' |')
    return '\n'.join(lines) + '\n\n' + '\n'.join(f'- {note}' for note in table.notes) + '\n'


def to_csv(table: Table) -> str:
    """Plain numbers (percent), the std and seed count where seeds were merged, intervals, a state column."""
    header, getters = list(table.label_headers), []
    for j, column in enumerate(table.columns):
        column_cells = [row[j] for row in table.cells]
        parts = [('', lambda c: c.mean)]
        if any(c.seeds for c in column_cells):
            parts += [(' std', lambda c: c.std), (' seeds', lambda c: c.seeds or None)]
        if any(c.ci for c in column_cells):
            parts += [(' ci low', lambda c: c.ci and c.ci[0]), (' ci high', lambda c: c.ci and c.ci[1])]
        for suffix, get in parts:
            header.append(column.header + suffix)
            getters.append((j, suffix, get))
    header += ['state', 'detail']
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(header)
    for label, row, state, detail in zip(table.labels, table.cells, table.states, table.details):
        values = []
        for j, suffix, get in getters:
            value = get(row[j])
            if value is None:
                values.append('')
            elif suffix == ' seeds':
                values.append(str(value))
            else:
                values.append(f'{100 * value:.4f}')
        writer.writerow([*label, *values, state, detail])
    return out.getvalue()


_TEX = {
    '\\': r'\textbackslash{}',
    '&': r'\&',
    '%': r'\%',
    '$': r'\$',
    '#': r'\#',
    '_': r'\_',
    '{': r'\{',
    '}': r'\}',
    '~': r'\textasciitilde{}',
    '^': r'\textasciicircum{}',
    '±': r'$\pm$',
    '†': r'$^\dagger$',
    '‡': r'$^\ddagger$',
    '–': '--',
    '→': r'$\to$',
    '×': r'$\times$',
}


def tex_escape(text: str) -> str:
    return ''.join(_TEX.get(char, char) for char in text)


def to_tex(table: Table) -> str:
    """A `tabular` (no package needed) and the notes below it."""

    def cell(c: Cell) -> str:
        return (rf'\textbf{{{tex_escape(c.number)}}}' if c.bold else tex_escape(c.number)) + tex_escape(c.suffix)

    header = table.label_headers + [column.header for column in table.columns]
    lines = [
        r'\begin{tabular}{' + 'l' * len(table.label_headers) + 'c' * len(table.columns) + '}',
        r'\hline',
        ' & '.join(map(tex_escape, header)) + r' \\',
        r'\hline',
    ]
    for label, row in zip(table.labels, table.cells):
        lines.append(' & '.join([*map(tex_escape, label), *map(cell, row)]) + r' \\')
    lines += [r'\hline', r'\end{tabular}', '']
    lines += [rf'{{\footnotesize {tex_escape(note)}\par}}' for note in table.notes]
    return '\n'.join(lines) + '\n'


def render(table: Table, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f'--format {fmt}: one of {", ".join(FORMATS)}')
    return {'md': to_markdown, 'csv': to_csv, 'tex': to_tex}[fmt](table)


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #


def _figure(width: float, height: float, layout: str | None = 'constrained'):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _curve_key(key: str) -> bool:
    return key in ('loss', 'lr') or key.startswith(('loss/', 'train/', 'lr/'))


def _panel_order(key: str) -> tuple[int, str]:
    """Loss terms, then train/* scalars, learning rates, the selection metric."""
    for rank, prefix in enumerate(('loss', 'train/', 'lr')):
        if key.startswith(prefix):
            return rank, key
    return 3, key


def plot_training_curves(points: Sequence[PointResult], metric: str, split: str, path: Path) -> str | None:
    """Loss terms, train/* scalars, learning rates and the selection metric of every point over steps."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for point in points:
        rows = read_metrics(point.workdir / METRICS_FILE)
        if not rows:
            continue
        best = _read_json(point.workdir / BEST_FILE)
        if isinstance(best, dict) and best.get('split') and best.get('metric'):
            select = f'{best["split"]}/{best["metric"]}'
        else:
            select = f'val/{metric}' if any(f'val/{metric}' in row for row in rows) else f'{split}/{metric}'
        for row in rows:
            for key, value in row.items():
                if (_curve_key(key) or key == select) and _number(value) is not None:
                    xs, ys = series.setdefault(key, {}).setdefault(point.name, ([], []))
                    xs.append(row['step'])
                    ys.append(value)
    if not series:
        return f'training curves: no logged loss, train/* or lr entries in {METRICS_FILE}; skipped'
    order = sorted(series, key=_panel_order)
    ncols = min(3, len(order))
    nrows = math.ceil(len(order) / ncols)
    figure = _figure(4.2 * ncols, 3.0 * nrows + 0.6)
    for i, key in enumerate(order):
        axes = figure.add_subplot(nrows, ncols, i + 1)
        for name, (xs, ys) in series[key].items():
            axes.plot(xs, ys, label=name, linewidth=1.2, marker='.' if len(xs) < 20 else None)
        axes.set_title(key, fontsize=9)
        axes.set_xlabel('step', fontsize=8)
        axes.tick_params(labelsize=7)
        if key.startswith('lr'):
            axes.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    handles, names = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc='outside lower center', ncols=min(4, len(names)), fontsize=7)
    _save(figure, path)
    return None


def _roc_file(point: PointResult, split: str) -> Path | None:
    """Saved ROC data of the point's shown checkpoint: `eval/best_<step>/` where selected, else the latest step."""
    found = sorted(point.workdir.glob(f'eval/*/roc_{split}_frame.npz'))
    if not found:
        return None
    preferred = [p for p in found if p.parent.name == f'best_{point.step}'] if point.from_best else []

    def step(path: Path) -> int:
        match = re.fullmatch(r'(?:step|best)_(\d+)', path.parent.name)
        return int(match.group(1)) if match else -1

    return (preferred or sorted(found, key=step))[-1]


def plot_roc(points: Sequence[PointResult], split: str, path: Path) -> str | None:
    """The frame-level ROC curves of every finished point that has saved curve data, in one figure."""
    import numpy as np

    curves = []
    for point in points:
        file = _roc_file(point, split) if point.state == 'finished' else None
        if file is None:
            continue
        with np.load(file) as data:
            if 'fpr' in data and 'tpr' in data:
                curves.append((point, data['fpr'], data['tpr']))
    if not curves:
        return (
            f'ROC: no saved curve data (eval/*/roc_{split}_frame.npz with fpr, tpr; runs evaluated before fdx saved '
            f'it have PNGs only), so no combined ROC figure; skipped'
        )
    figure = _figure(5.5, 5.0)
    axes = figure.add_subplot()
    for point, fpr, tpr in curves:
        auc = point.values.get('frame/auc')
        axes.plot(fpr, tpr, linewidth=1.2, label=point.name + (f' (AUC {_pct(auc)})' if auc is not None else ''))
    axes.plot([0, 1], [0, 1], linestyle='--', color='grey', linewidth=0.8)
    axes.set(xlabel='false positive rate', ylabel='true positive rate', xlim=(0, 1), ylim=(0, 1.01))
    axes.set_title(f'{split}, frame level', fontsize=10)
    axes.legend(fontsize=7, loc='lower right')
    _save(figure, path)
    return None


def plot_table(table: Table, path: Path) -> None:
    """The table as an image (header and best values bold), its notes below."""
    header = table.label_headers + [column.header for column in table.columns]
    body = [[*label, *(cell.text for cell in row)] for label, row in zip(table.labels, table.cells)]
    widths = [max(len(r[j]) for r in [header, *body]) + 2 for j in range(len(header))]
    row_in, note_in, margin = 0.3, 0.18, 0.15
    notes_height = note_in * len(table.notes)
    table_height = row_in * (len(body) + 1)
    height = table_height + notes_height + 3 * margin
    width = max(3.0, 0.075 * max(sum(widths), max((len(n) for n in table.notes), default=0) * 0.8))
    figure = _figure(width, height, layout=None)
    bottom = (notes_height + 2 * margin) / height
    axes = figure.add_axes((0.01, bottom, 0.98, table_height / height))
    axes.axis('off')
    drawn = axes.table(
        cellText=body,
        colLabels=header,
        cellLoc='center',
        colWidths=[w / sum(widths) for w in widths],
        bbox=(0, 0, 1, 1),
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for j in range(len(header)):
        drawn[(0, j)].get_text().set_fontweight('bold')
    offset = len(table.label_headers)
    for i, row in enumerate(table.cells):
        for j, cell in enumerate(row):
            if cell.bold:
                drawn[(i + 1, offset + j)].get_text().set_fontweight('bold')
    for k, note in enumerate(table.notes):
        figure.text(0.01, (notes_height + margin - note_in * k) / height, note, fontsize=6.5, va='top')
    _save(figure, path, dpi=150)


def _save(figure, path: Path, dpi: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format='png', dpi=dpi)


def write_plots(table: Table, split: str, metric: str, out_dir: Path) -> list[str]:
    """The figures of `--plots`; returns one line per figure written or skipped."""
    lines = []
    for name, draw in (
        (f'roc_{split}.png', lambda p: plot_roc(table.points, split, p)),
        ('training_curves.png', lambda p: plot_training_curves(table.points, metric, split, p)),
        ('table.png', lambda p: plot_table(table, p)),
    ):
        skipped = draw(out_dir / name)
        lines.append(skipped or f'wrote {out_dir / name}')
    return lines


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def main(argv: Sequence[str]) -> int:
    """`fdx results ROOT… [--rows KEY[,KEY]] [--cols KEY|crosseval] [--metric M] [--split S] [--format F] …`."""
    parser = argparse.ArgumentParser(prog='fdx results', description=__doc__.split('\n\n')[0])
    parser.add_argument('roots', nargs='+', metavar='ROOT', help='a grid folder <root>/<name>, or a folder of grids')
    parser.add_argument('--rows', metavar='KEY[,KEY]', help='swept keys labelling the rows (default: every varied one)')
    parser.add_argument('--cols', metavar='KEY', help='a swept key whose values are the columns, or crosseval')
    parser.add_argument('--metric', help='metric after the split (default frame/auc; frame/acc for attribution)')
    parser.add_argument('--split', default='test', help='evaluated split (default: test)')
    parser.add_argument('--format', choices=FORMATS, default='md')
    parser.add_argument('--out', metavar='FILE', help='write the table here instead of printing it')
    parser.add_argument('--plots', metavar='DIR', help='write ROC, training-curve and table PNGs here')
    args = parser.parse_args(list(argv))
    points, grid_notes = collect(args.roots, args.split)
    table = build_table(points, args.split, args.metric, args.rows, args.cols, grid_notes)
    text = render(table, args.format)
    messages = sys.stderr if args.format == 'csv' and not args.out else sys.stdout  # keep a printed CSV clean
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    else:
        print(text, end='')
    if args.format == 'csv':  # md and tex carry their notes
        print('\n'.join(table.notes), file=messages)
    if args.out:
        print(f'wrote {out}', file=messages)
    if args.plots:
        metric = args.metric or default_metric(points)
        for line in write_plots(table, args.split, metric, Path(args.plots)):
            print(line, file=messages)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
