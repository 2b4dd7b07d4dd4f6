"""Cross evaluation of a grid: every finished point evaluated with every value of one config key.

    fdx crosseval --root runs --name dma_sta_dfdm-table5 --key data.quality --values crf0,crf10,crf23 \
        [--labels NoL,HQ,LQ] [--split test]

DMA-STA's Table 5 (train on each DFDM quality, test on every quality) and FF++ HQ↔LQ transfer are such tables. Each
point's latest checkpoint is evaluated per value (`fdx eval --config.<key>=<value>`, results kept under
`<point>/crosseval/<value>/`, reused when present); the table (rows `train→test`; per-class and overall accuracy for
attribution, ACC/AUC/EER for detection) is printed and written to `<root>/<name>/crosseval_<key>.md`.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from fdx import config as config_lib
from fdx import evaluate
from fdx.grid import DONE_FILE


def _value(config, key: str):
    for part in key.split('.'):
        config = config[part]
    return config


def table(rows: list[tuple[str, dict]], class_names: Sequence[str] | None) -> str:
    """Markdown: attribution → per-class accuracy and overall (%), detection → frame ACC/AUC/EER and video AUC."""
    if class_names:
        header = ['Train→Test', *class_names, 'Overall']
        cells = [
            [
                name,
                *(f'{100 * m["frame"]["per_class_acc"][c]:.2f}' for c in class_names),
                f'{100 * m["frame"]["acc"]:.2f}',
            ]
            for name, m in rows
        ]
    else:
        header = ['Train→Test', 'ACC', 'AUC', 'EER', 'video AUC']
        cells = [
            [
                name,
                *(f'{100 * m["frame"][k]:.2f}' for k in ('acc', 'auc', 'eer')),
                f'{100 * m["video"]["auc"]:.2f}' if 'video' in m else '–',
            ]
            for name, m in rows
        ]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in cells])


def main(argv: Sequence[str]) -> int:
    """`fdx crosseval --root DIR --name GRID --key DOTTED.KEY --values V1,V2,… [--labels L1,L2,…] [--split S]`."""
    parser = argparse.ArgumentParser(prog='fdx crosseval', description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='runs')
    parser.add_argument('--name', required=True, help='the grid name (folder under --root)')
    parser.add_argument('--key', required=True, help='dotted config key varied between train and test')
    parser.add_argument('--values', required=True, help='comma-separated values to evaluate on')
    parser.add_argument('--labels', help='comma-separated display names for the values (default: the values)')
    parser.add_argument('--split', default='test')
    args = parser.parse_args(argv)
    values = args.values.split(',')
    labels = dict(zip(values, args.labels.split(',') if args.labels else values))
    if len(labels) != len(values):
        parser.error('--labels must name every value')
    grid = Path(args.root) / args.name
    points = sorted(p.parent for p in grid.glob(f'*/{DONE_FILE}'))
    if not points:
        print(f'fdx crosseval: no finished point (with {DONE_FILE}) under {grid}', file=sys.stderr)
        return 2
    rows, class_names = [], None
    for point in points:
        config = config_lib.load_saved_config(point)
        trained = str(_value(config, args.key))
        for value in values:
            out = point / 'crosseval' / value
            result = out / f'metrics_{args.split}.json'
            if not result.is_file():
                code = evaluate.main(
                    ['--workdir', str(point), '--split', args.split, '--out', str(out), f'--config.{args.key}={value}']
                )
                if code:
                    print(f'fdx crosseval: evaluating {point} on {args.key}={value} failed', file=sys.stderr)
                    return code
            metrics = json.loads(result.read_text())
            class_names = list(metrics['frame']['per_class_acc']) if 'per_class_acc' in metrics['frame'] else None
            rows.append((f'{labels.get(trained, trained)}→{labels[value]}', metrics))
    markdown = table(rows, class_names)
    path = grid / f'crosseval_{args.key.replace(".", "_")}.md'
    path.write_text(markdown + '\n')
    print(markdown)
    print(f'\nwrote {path}')
    return 0
