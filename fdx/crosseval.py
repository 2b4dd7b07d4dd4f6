"""Cross evaluation: trained workdirs (or every finished point of a grid) evaluated with other values of a config key.

    fdx crosseval --workdir runs/ffpp --datasets ffpp,celebdf [--set celebdf:data.frame.quality=raw]
    fdx crosseval --root runs --name dma_sta_dfdm-table5 --key data.clip.quality --values crf0,crf10,crf23 \
        [--labels NoL,HQ,LQ] [--split test] [--step best|latest] [--config.KEY=VALUE …]

Train FF++ → test Celeb-DF, DFDM, … (`--datasets` is `--key data.name`), DMA-STA's Table 5 (train on each DFDM
quality, test on every quality) and FF++ HQ↔LQ transfer are such tables. Each workdir's checkpoint (`--step`: by
default the best one by `config.select` where the run keeps one, else the latest) is evaluated per value (`fdx eval
--config.<key>=<value>` plus that value's `--set` overrides), results kept under `<workdir>/crosseval/<value>/` and
reused when present. Printed and written to `<root>/<name>/crosseval_<key>.md` (or beside the first workdir):
one row per train → test pair (binary: frame ACC/AUC with 95% intervals, EER, video AUC; attribution: per-class and
overall accuracy), the train × test matrix of the headline metric, and — for points differing only in `seed` —
mean ± std over the seeds.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from fdx import config as config_lib
from fdx import evaluate, metrics, state
from fdx.grid import DONE_FILE


def _value(config, key: str):
    """`config` at the dotted `key` (an unknown key is an error naming the closest ones)."""
    parent, leaf = config_lib.resolve_key(config, key)
    return parent[leaf]


def _pct(value: float) -> str:
    return f'{100 * value:.2f}'


def _interval(result: dict, name: str) -> str:
    ci = result.get('ci', {}).get(name)
    return f' [{_pct(ci[0])}, {_pct(ci[1])}]' if ci else ''


def row_cells(result: dict, class_names: Sequence[str] | None) -> list[str]:
    """The cells of one evaluated pair (percentages)."""
    frame = result['frame']
    if class_names:
        return [*(_pct(frame['per_class_acc'][c]) for c in class_names), _pct(frame['acc']) + _interval(frame, 'acc')]
    video = result.get('video')
    return [
        _pct(frame['acc']) + _interval(frame, 'acc'),
        _pct(frame['auc']) + _interval(frame, 'auc'),
        _pct(frame['eer']),
        _pct(video['auc']) if video else '–',
    ]


def headline(result: dict, class_names: Sequence[str] | None) -> float:
    """The matrix metric: overall accuracy (attribution) or frame AUC (detection)."""
    return result['frame']['acc' if class_names else 'auc']


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def tables(evaluated: list[dict], values: Sequence[str], labels: dict[str, str]) -> str:
    """Markdown: the pairs, the train × test matrix, and mean ± std over seeds where points differ only in seed.

    `evaluated` holds {'train': row label, 'group': seed-free config key, 'value', 'result', 'selected_on_test'}.
    """
    first = evaluated[0]['result']['frame']
    class_names = list(first['per_class_acc']) if 'per_class_acc' in first else None
    metric_header = [*class_names, 'Overall'] if class_names else ['ACC', 'AUC', 'EER', 'video AUC']
    flagged = any(e['selected_on_test'] for e in evaluated)
    mark = lambda e: ' (selected on test)' if e['selected_on_test'] else ''  # noqa: E731
    pairs = [[f'{e["train"]}→{labels[e["value"]]}{mark(e)}', *row_cells(e['result'], class_names)] for e in evaluated]
    parts = [_markdown(['Train→Test', *metric_header], pairs)]
    trains = list(dict.fromkeys(e['train'] for e in evaluated))
    cells = {(e['train'], e['value']): _pct(headline(e['result'], class_names)) for e in evaluated}
    name = 'overall accuracy' if class_names else 'frame AUC'
    matrix = [[train, *(cells.get((train, v), '–') for v in values)] for train in trains]
    parts.append(f'Train × test ({name}, %):\n\n' + _markdown(['Train \\ Test', *(labels[v] for v in values)], matrix))
    groups = defaultdict(list)
    for e in evaluated:
        groups[(e['group'], e['value'])].append(e)
    repeated = {k: g for k, g in groups.items() if len(g) > 1}
    if repeated:
        rows = []
        for (_, value), group in repeated.items():
            mean, std = metrics.mean_std([headline(e['result'], class_names) for e in group])
            rows.append([f'{group[0]["train"]}→{labels[value]}', str(len(group)), metrics.format_mean_std(mean, std)])
        parts.append(f'Over seeds ({name}, mean ± std, %):\n\n' + _markdown(['Train→Test', 'seeds', name], rows))
    if flagged:
        parts.append('Some checkpoints were selected on the test split: their test figures are optimistic.')
    return '\n\n'.join(parts)


def _group_key(config) -> str:
    """The config without its seed: points with the same key are repeats of one experiment."""
    as_dict = json.loads(config.to_json_best_effort())
    as_dict.pop('seed', None)
    return json.dumps(as_dict, sort_keys=True)


def main(argv: Sequence[str]) -> int:
    """`fdx crosseval (--workdir DIR … | --root DIR --name GRID) (--datasets D1,D2 | --key KEY --values V1,V2) …`."""
    _, shared, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx crosseval', description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', action='append', help='a trained workdir (repeatable)')
    parser.add_argument('--root', default='runs')
    parser.add_argument('--name', help='a grid name (folder under --root): every finished point')
    parser.add_argument('--key', help='dotted config key varied between train and test')
    parser.add_argument('--values', help='comma-separated values to evaluate on')
    parser.add_argument('--datasets', help='comma-separated prepared datasets: --key data.name --values …')
    parser.add_argument('--set', action='append', default=[], metavar='VALUE:KEY=V', help='an override for one value')
    parser.add_argument('--labels', help='comma-separated display names for the values (default: the values)')
    parser.add_argument('--split', default='test')
    parser.add_argument('--step', choices=('best', 'latest'), help='default: best where the run keeps one')
    args = parser.parse_args(rest)
    if args.datasets:
        if args.key or args.values:
            parser.error('--datasets replaces --key/--values')
        args.key, args.values = 'data.name', args.datasets
    if not args.key or not args.values:
        parser.error('give --datasets, or --key and --values')
    if bool(args.workdir) == bool(args.name):
        parser.error('give --workdir (one or more) or --name (a grid under --root)')
    values = args.values.split(',')
    labels = dict(zip(values, args.labels.split(',') if args.labels else values))
    if len(labels) != len(values):
        parser.error('--labels must name every value')
    per_value = defaultdict(list)
    for item in args.set:
        value, sep, override = item.partition(':')
        if not sep or value not in values or '=' not in override:
            parser.error(f'--set {item!r}: expected VALUE:KEY=V with VALUE one of {", ".join(values)}')
        per_value[value].append(override if override.startswith('--config.') else f'--config.{override}')
    if args.name:
        out_dir = Path(args.root) / args.name
        points = sorted(p.parent for p in out_dir.glob(f'*/{DONE_FILE}'))
        if not points:
            raise FileNotFoundError(f'no finished point (with {DONE_FILE}) under {out_dir}')
    else:
        points = [Path(w) for w in args.workdir]
        out_dir = points[0]
    configs = {point: config_lib.load_saved_config(point) for point in points}
    trained = {point: str(_value(configs[point], args.key)) for point in points}
    unique = len(set(trained.values())) == len(points)  # else rows are named by workdir
    evaluated = []
    for point in points:
        best = state.read_best(point)
        step = args.step or ('best' if best else 'latest')
        if step == 'best' and not best:
            raise ValueError(f'--step best: {point} keeps no best checkpoint (config.select)')
        train_label = labels.get(trained[point], trained[point]) if unique else point.name
        for value in values:
            out = point / 'crosseval' / (value if step == 'latest' else f'{value}-best')
            result = out / f'metrics_{args.split}.json'
            if not result.is_file():
                eval_args = ['--workdir', str(point), '--split', args.split, '--out', str(out)]
                eval_args += ['--step', 'best'] if step == 'best' else []
                eval_args += [*shared, f'--config.{args.key}={value}', *per_value[value]]
                code = evaluate.main(eval_args)
                if code:
                    print(f'fdx crosseval: evaluating {point} on {args.key}={value} failed', file=sys.stderr)
                    return code
            loaded = json.loads(result.read_text())
            evaluated.append(
                {
                    'train': train_label,
                    'group': _group_key(configs[point]),
                    'value': value,
                    'result': loaded,
                    'selected_on_test': bool(loaded.get('checkpoint', {}).get('selected_on_test')),
                }
            )
    markdown = tables(evaluated, values, labels)
    path = out_dir / f'crosseval_{args.key.replace(".", "_")}.md'
    path.write_text(markdown + '\n')
    print(markdown)
    print(f'\nwrote {path}')
    return 0
