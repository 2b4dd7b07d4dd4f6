"""The `fdx` command: `fdx <sub-command> [args]`; `fdx <sub-command> --help` describes each."""

import importlib
import sys
from typing import Sequence

from fdx import allocator

# sub-command → (module with `main(argv) -> int`, one-line description)
COMMANDS = {
    'convert-weights': ('fdx.models.convert', 'PyTorch state dict → orbax checkpoint of flax variables'),
    'synth': ('fdx.synth.build', 'make the embedded mini forgery benchmark (DFDM and FF++ layouts, H.264)'),
    'prepare': ('fdx.input.prepare', 'raw FF++ / Celeb-DF / DFDM videos → face-crop TFDS records'),
    'train': ('fdx.train', 'train (or resume) an experiment config in a workdir'),
    'eval': ('fdx.evaluate', 'evaluate a checkpoint of a workdir on any split'),
    'grid': ('fdx.grid', "ablation grid over a config's sweep(): print or run one training per point"),
    'bench': ('fdx.bench', 'measure the train step (vs PyTorch), input pipeline, preprocessing and matmul peak'),
    'crosseval': ('fdx.crosseval', 'evaluate every point of a grid on every value of a key; markdown table'),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a sub-command. Called as the `fdx` program (`argv` None), CPU runs restart under jemalloc first
    (`fdx.allocator`); called with `argv` (tests, scripts), the process is left as it is."""
    if argv is None:
        allocator.restart_with_jemalloc(sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f'  {name:<{width}}  {help_}' for name, (_, help_) in COMMANDS.items()]
        print('usage: fdx <command> [args]\n\ncommands:\n' + '\n'.join(lines))
        if argv and argv[0] not in ('-h', '--help'):
            print(f'\nfdx: unknown command {argv[0]!r}', file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == '__main__':
    sys.exit(main())
