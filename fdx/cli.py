"""The `fdx` command: `fdx [--debug] <sub-command> [args]`; `fdx <sub-command> --help` describes each.

Errors: a sub-command reports a bad configuration or input by raising ValueError (a bad value, option or file
content), KeyError (an unknown config key or field), FileNotFoundError / NotADirectoryError (a path or program that
must exist) or FileExistsError (an output that must not). `main` prints any of these as one line on stderr,
`fdx <sub-command>: <message>`, and exits 2; `--debug` (before or anywhere after the sub-command) prints the full
traceback instead. Argparse's usage errors exit 2 as before; any other exception is a bug and keeps its traceback.
"""

import importlib
import sys
import traceback
from typing import Sequence

from fdx import allocator

# sub-command → (module with `main(argv) -> int`, one-line description)
COMMANDS = {
    'convert-weights': ('fdx.models.convert', 'PyTorch state dict → orbax checkpoint of flax variables'),
    'synth': ('fdx.synth.build', 'make the embedded mini forgery benchmark (DFDM and FF++ layouts, H.264)'),
    'prepare': ('fdx.input.prepare', 'raw dataset videos (FF++, Celeb-DF, DFDM, DFD, DFDC, …) → face-crop TFDS records'),
    'train': ('fdx.train', 'train (or resume) an experiment config in a workdir'),
    'eval': ('fdx.evaluate', 'evaluate a checkpoint of a workdir on any split'),
    'detect': ('fdx.detect', 'score videos, images or folders with a trained workdir (tables, JSON, CSV, annotations)'),
    'export': ('fdx.export', "a workdir's eval-mode predict function → jax.export StableHLO + weights + preprocessing"),
    'grid': ('fdx.grid', "ablation grid over a config's sweep(): print or run one training per point"),
    'bench': ('fdx.bench', 'measure the train step (vs PyTorch), input pipeline, preprocessing and matmul peak'),
    'crosseval': ('fdx.crosseval', 'evaluate every point of a grid on every value of a key; markdown table'),
    'results': ('fdx.results', 'results table of grids (md, csv, tex): every point, its state, mean ± std over seeds'),
    'summary': ('fdx.summary', "a config's parameters and XLA-counted GFLOPs per top-level module"),
}
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FileExistsError)
DEBUG_FLAG = '--debug'


def error_line(error: BaseException) -> str:
    """`error`'s message on one line (lines joined, a KeyError's unquoted); a bare word, such as the key of a failed
    lookup, or no message at all gets the exception's type name."""
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    line = ' '.join(part.strip() for part in str(text).splitlines() if part.strip())
    if ' ' in line:
        return line
    return f'{type(error).__name__}: {line}' if line else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a sub-command. Called as the `fdx` program (`argv` None), CPU runs restart under jemalloc first
    (`fdx.allocator`); called with `argv` (tests, scripts), the process is left as it is."""
    if argv is None:
        allocator.restart_with_jemalloc(sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f'  {name:<{width}}  {help_}' for name, (_, help_) in COMMANDS.items()]
        print(
            'usage: fdx [--debug] <command> [args]\n\ncommands:\n'
            + '\n'.join(lines)
            + '\n\n--debug: show the traceback of a configuration or input error'
        )
        if argv and argv[0] not in ('-h', '--help'):
            print(f'\nfdx: unknown command {argv[0]!r}', file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return module.main(argv[1:])
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        else:
            print(f'fdx {argv[0]}: {error_line(error)} ({DEBUG_FLAG} for the traceback)', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
