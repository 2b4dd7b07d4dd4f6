"""The quickstart (`make demo`): synthesise the mini benchmark, prepare DFDM, train DMA-STA, evaluate, report.

The checkpoint evaluated on the held-out test videos is the one of the best accuracy on `val` (10% of the training
videos of each class, `experiments/dma_sta_dfdm.py`), never chosen on test.

Each stage reuses what an earlier run left in the work directory (`fdx synth` output, prepared records, a finished
training), so a second `make demo` only re-evaluates.
"""

import json
import sys
import time
from pathlib import Path

from fdx import cli
from fdx.input.layouts import MODELS

# The DMA-STA paper's column names for the five DFDM models (Tables 3-5).
COLUMNS = {'Faceswap': 'FS', 'Lightweight': 'LW', 'IAE': 'IAE', 'Dfaker': 'Dfaker', 'DFL-H128': 'DFL'}
CONFIG = 'experiments/dma_sta_dfdm.py:mini'


def accuracy_table(metrics: dict) -> str:
    """Per-class and overall accuracy (%) in the paper's column order with the number of videos behind each column
    (the confusion matrix's row sums), as a markdown table."""
    header = [COLUMNS[m] for m in MODELS] + ['Overall']
    values = [f'{100 * metrics["per_class_acc"][m]:.2f}' for m in MODELS] + [f'{100 * metrics["acc"]:.2f}']
    videos = [sum(row) for row in metrics['confusion_matrix']]
    rows = [['accuracy (%)', *values], ['test videos', *map(str, videos), str(sum(videos))]]
    lines = ['| | ' + ' | '.join(header) + ' |', '|---|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def main(argv=None) -> int:
    work = Path(argv[0] if argv else 'work')
    synth, data, run = work / 'synth', work / 'data', work / 'runs' / 'dma_sta_mini'
    stages = [
        ('synth', ['synth', '--out', str(synth), '--size', 'mini']),
        (
            'prepare',
            [
                'prepare',
                'dfdm',
                '--src',
                str(synth / 'dfdm'),
                '--out',
                str(data),
                '--frames',
                '32',
                '--crop-size',
                '128',
                '--workers',
                '2',
            ],
        ),
        ('train', ['train', '--config', CONFIG, f'--config.data.dir={data}', '--workdir', str(run)]),
        ('eval', ['eval', '--workdir', str(run), '--step', 'best', '--out', str(run / 'demo_eval')]),
    ]
    times = {}
    for name, args in stages:
        if name == 'train' and (run / 'done.json').is_file():
            print(f'== train: reusing the finished run in {run}')
            continue
        print(f'== {name}: fdx {" ".join(args)}', flush=True)
        start = time.perf_counter()
        code = cli.main(args)
        times[name] = time.perf_counter() - start
        if code:
            print(f'demo: stage {name} failed (exit {code})', file=sys.stderr)
            return code
    metrics = json.loads((run / 'demo_eval' / 'metrics_test.json').read_text())
    video = metrics['video']  # one clip per video, aggregated per video
    best = metrics['checkpoint']['selected_by']
    print(
        f'\nDMA-STA (mini) on the held-out DFDM-layout videos, HQ (crf10), step {best["step"]} (best {best["split"]} '
        f'{best["metric"]} = {100 * best["value"]:.2f}), video-level accuracy (%):\n'
    )
    print(accuracy_table(video))
    print(f'\nconfusion matrix: {run / "demo_eval" / "confusion_test_video.png"}')
    print('stage times: ' + ', '.join(f'{k} {v:.0f} s' for k, v in times.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
