"""`fdx bench {step,predict,input,prepare,detect,peak}`: measured speed of the train step, the eval-mode forward, the
input pipeline, preprocessing and detection.

    fdx bench step --arch resnet50 --batch 8 --size 224 --vs-torch     # vs the timm model + torch.optim.SGD step
    fdx bench step --arch experiments/dma_sta_dfdm.py:mini             # a method's real train step, synthetic batches
    fdx bench predict --arch xception --batch 32 --vs-torch --peak     # vs timm under torch.inference_mode()
    fdx bench predict --arch resnet50 --batch 1 --vs-torch eager,compile     # vs eager and torch.compile, alternating
    fdx bench step --arch resnet50 --batch 128 --dtype bf16 --vs-torch amp,amp+channels_last+compile   # on a GPU
    fdx bench input --dir DATA --name dfdm --view clip --workers 2     # grain pipeline from prepared records
    fdx bench input --dir DATA --config experiments/aunet_ffpp.py      # a config's train view (self-blended fakes)
    fdx bench prepare dfdm --src RAW --frames 8                        # `fdx prepare`, frames/s
    fdx bench detect --workdir W clip.mp4 …                            # `fdx detect` frames/s, per stage
    fdx bench peak                                                     # matmul FLOP/s, the yardstick of step figures

Every sub-command prints a table and, with `--json PATH`, writes its figures. The step is the trainer's own
(`fdx.train.Setup.compiled_train_step`: forward, backward, optimizer and batch-norm updates, donated state), the
predict the method's eval-mode `predict(variables, batch)` (what `fdx eval` and `fdx detect` run), jitted; both are
timed after compilation, `--peak` sets them against this machine's matmul FLOP/s; XLA's FLOP count and memory estimate come from the compiled executable. `--threads N` pins the
process to N cores and gives JAX (XLA's intra-op pool) and PyTorch (`torch.set_num_threads`) the same N threads.
`--vs-torch [SETUP,...]` runs the PyTorch step in a child process per setup (eager; `amp` bf16 autocast,
`channels_last`, `compile`) on the same cores (or the same GPU), with the same allocator (`fdx.allocator`),
alternating with the fdx step.
"""

import argparse
import dataclasses
import json
import math
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Classifier backbones by name: (fdx.methods.classifier backbone, its kwargs, the equivalent timm model, its kwargs).
ARCHS = {
    'xception': ('xception', {}, 'legacy_xception', {}),
    'resnet50': ('resnet', {'stage_sizes': (3, 4, 6, 3), 'width': 64}, 'resnet50', {}),
}
DTYPES = {'f32': 'float32', 'bf16': 'bfloat16'}


def pin_threads(threads: int | None) -> int:
    """Pins this process to the first `threads` allowed cores and gives XLA's intra-op pool as many threads; returns
    the thread count. Must run before JAX starts its backend (the first computation) for the flag to apply."""
    cores = sorted(os.sched_getaffinity(0))
    threads = threads or len(cores)
    if not 1 <= threads <= len(cores):
        raise ValueError(f'--threads: must be in [1, {len(cores)}] (the cores this process may use), got {threads}')
    os.sched_setaffinity(0, cores[:threads])
    pool = f'--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}'
    os.environ['XLA_FLAGS'] = ' '.join(filter(None, [os.environ.get('XLA_FLAGS', ''), pool]))
    return threads


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of repeated timings (seconds)."""
    q1, _, q3 = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else (seconds[0],) * 3
    return {
        'median_s': statistics.median(seconds),
        'min_s': min(seconds),
        'max_s': max(seconds),
        'iqr_s': q3 - q1,
        'runs': len(seconds),
    }


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import jax

    info = {'cpu': platform.processor() or platform.machine(), 'cores': len(os.sched_getaffinity(0))}
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
        info['cpu'] = next(line.split(':', 1)[1].strip() for line in lines if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    info.update({'jax': jax.__version__, 'backend': jax.default_backend(), 'xla_flags': os.environ.get('XLA_FLAGS')})
    info['devices'] = [d.device_kind for d in jax.devices()]
    info['malloc'] = 'jemalloc' if 'jemalloc' in os.environ.get('LD_PRELOAD', '') else 'default (glibc)'
    return info


# --- the train step -----------------------------------------------------------------------------------------------


def classifier_config(arch: str, batch: int, size: int, dtype: str):
    """A binary `classifier` config on `arch` with the trainer's defaults (SGD, lr 0.01, momentum 0.9)."""
    import ml_collections

    from fdx import train

    backbone, kwargs, _, _ = ARCHS[arch]
    c = train.base_config()
    c.batch_size = batch
    c.model = ml_collections.ConfigDict(
        {'backbone': backbone, 'backbone_kwargs': kwargs, 'dtype': dtype, 'remat': False, 'dropout_rate': 0.0}
    )
    from fdx.input import data_config

    c.data = data_config(
        name='synthetic', class_names=('real', 'fake'), frames=0, image_size=size, train_view='synthetic'
    )
    return c


def example_batch(config, batch: int) -> dict[str, np.ndarray]:
    """A random batch of the method's input: synthetic data and views with a `spec` are synthesised, other views take
    one real batch's shapes (the data must then be prepared)."""
    from fdx import input as input_lib
    from fdx import methods as methods_lib
    from fdx import train

    rng = np.random.default_rng(0)
    data = config.data
    classes = len(data.class_names)
    if data.name == 'synthetic':
        shape = (batch, *((data.frames,) if data.frames else ()), data.image_size, data.image_size, 3)
        spec = {'image': (shape[1:], 'float32'), 'label': ((), 'int32')}
    else:
        methods_lib.method_class(config)  # a method's module may register the views it reads
        spec = input_lib.build_view(data, 'train').spec()
    if spec is not None:
        return {
            key: rng.uniform(-1, 1, (batch, *shape)).astype(dtype)
            if np.dtype(dtype).kind == 'f'
            else rng.integers(0, classes if key in ('label', 'class_id') else 1, (batch, *shape)).astype(dtype)
            for key, (shape, dtype) in spec.items()
        }
    from fdx.input import pipeline

    real = next(iter(pipeline.make_loader(train.train_dataset(config), workers=0)))
    return {k: rng.uniform(-1, 1, v.shape).astype(v.dtype) if v.dtype.kind == 'f' else v for k, v in real.items()}


def set_input_size(config, size: int | None) -> int:
    """Sets the input size of the config's train view (its `size`, `backbone_size`, or the synthetic data's
    `image_size`) to `size` when given; returns the size in use."""
    data = config.data
    if data.name == 'synthetic':
        if size:
            data.image_size = size
        return data.image_size
    view = data.get(data.train_view) or {}
    key = next((k for k in ('size', 'backbone_size') if k in view), None)
    if key is None:
        raise ValueError(f'--size: view {data.train_view!r} has no size or backbone_size field')
    if size:
        view[key] = size
    return view[key]


def compiled_step(config, batch: dict[str, np.ndarray], predict: bool = False):
    """The trainer's jitted step (or with `predict` the method's jitted eval-mode `predict`), its compiled
    executable, its first argument (the initial train state, or its variables), the global batch, and the compile
    times with the traced convolution and matmul FLOPs (`traced_flops`)."""
    import jax

    from fdx import sharding, state

    setup = state.Setup(config, steps_per_epoch=1000, example_batch=batch)
    first = setup.initial_state()
    global_batch = sharding.global_batch(batch, setup.mesh)
    if predict:
        first = first.variables()
        fn = jax.jit(setup.method.predict, out_shardings=sharding.replicated(setup.mesh))
    else:
        fn = setup.compiled_train_step()
    start = time.perf_counter()
    traced = fn.trace(first, global_batch)
    lowered = traced.lower()
    lower_s = time.perf_counter() - start
    compiled = lowered.compile()
    times = {'lower_s': lower_s, 'compile_s': time.perf_counter() - start}
    return setup, compiled, first, global_batch, {**times, 'flops': traced_flops(traced.jaxpr)}


def xla_costs(compiled) -> dict[str, float]:
    """XLA's FLOP count and memory estimate (bytes) of a compiled executable."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = compiled.memory_analysis()
    out = {'flops': float(cost.get('flops', 0.0)), 'bytes_accessed': float(cost.get('bytes accessed', 0.0))}
    if memory is not None:
        fields = ('argument', 'output', 'temp', 'generated_code')
        out.update({f'{f}_bytes': float(getattr(memory, f'{f}_size_in_bytes')) for f in fields})
        # arguments are donated, so outputs reuse them; peak ≈ arguments + temporaries (+ code)
        out['peak_bytes'] = out['argument_bytes'] + out['temp_bytes'] + out['generated_code_bytes']
    return out


def traced_flops(jaxpr) -> float:
    """FLOPs of the convolutions and matmuls in a (closed) jaxpr, sub-jaxprs included (a scan's body times its
    length, a cond's costliest branch): 2 per multiply-add, taps on padding included (the libraries compute them;
    XLA's CPU count leaves them out). Unlike XLA's cost analysis, which on GPU leaves out the
    cuDNN/cuBLAS library calls that do nearly all of the work, this counts the same on every backend. Values that
    no output needs (as XLA would drop them, e.g. the image's gradient) are dropped first."""
    from jax._src.interpreters import partial_eval  # dce_jaxpr: jax's own dead-code elimination (no public API)
    from jax.extend import core

    jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
    jaxpr, _ = partial_eval.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == 'conv_general_dilated':
            rhs = eqn.invars[1].aval.shape
            out_features = rhs[eqn.params['dimension_numbers'].rhs_spec[0]]
            # each output element sums over the kernel's window and its input features; of an input dilated by d
            # (a strided convolution's input gradient) only 1 in prod(d) taps meets a value that is not a zero
            taps = np.prod(rhs) / out_features / np.prod(eqn.params['lhs_dilation'])
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * taps
        elif name == 'dot_general':
            (contracting, _), _ = eqn.params['dimension_numbers']
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contracting])
        subs = [
            [value] if isinstance(value, (core.Jaxpr, core.ClosedJaxpr)) else value
            for value in eqn.params.values()
            if isinstance(value, (core.Jaxpr, core.ClosedJaxpr))
            or (isinstance(value, (tuple, list)) and value and isinstance(value[0], (core.Jaxpr, core.ClosedJaxpr)))
        ]
        for group in subs:
            costs = [traced_flops(sub) for sub in group]
            if name == 'cond':
                total += max(costs)
            else:
                total += sum(costs) * (eqn.params['length'] if name == 'scan' else 1)
    return float(total)


def profile_step(run: Callable[[], Any], directory: str, steps: int = 3) -> dict[str, Any]:
    """Traces `steps` runs with `jax.profiler` into `directory`; returns the XLA ops' time per step, largest first.

    Ops are the executable's thunks (fusions, library calls such as `ynn_fusion` convolutions/matmuls, copies),
    summed over threads; `kinds` groups them by name without the numeric suffix (`loop_fusion.12` → `loop_fusion`).
    """
    import jax
    from jax._src.lib import _profile_data  # the xplane reader behind jax.profiler (no public API yet)

    jax.profiler.start_trace(directory)
    for _ in range(steps):
        run()
    jax.profiler.stop_trace()
    path = max(Path(directory).glob('**/*.xplane.pb'), key=lambda p: p.stat().st_mtime)
    ops: dict[str, float] = {}
    for plane in _profile_data.ProfileData.from_file(str(path)).planes:
        for line in plane.lines:
            if line.name.startswith(('tf_XLAEigen', 'tf_XLAPjRtCpuClient', 'XLA Ops')):
                for event in line.events:
                    if not event.name.startswith('ThunkExecutor'):
                        ops[event.name] = ops.get(event.name, 0.0) + event.duration_ns / 1e9 / steps
    kinds: dict[str, float] = {}
    for name, seconds in ops.items():
        kind = re.sub(r'\.\d+$', '', name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    return {
        'trace': str(path),
        'op_seconds_per_step': sum(ops.values()),
        'kinds': _largest_first(kinds),
        'ops': _largest_first(ops),
    }


def _largest_first(seconds: dict[str, float]) -> dict[str, float]:
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


@dataclasses.dataclass(frozen=True)
class TorchSetup:
    """How the PyTorch side runs (`--vs-torch SPEC,...`; a spec is `eager` or options joined by '+'): `amp` (bf16
    autocast), `channels_last` (model and input in NHWC memory format) and `compile` (`torch.compile`, inductor,
    compiled in the warm-up runs)."""

    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, spec: str) -> 'TorchSetup':
        options = set() if spec == 'eager' else set(spec.split('+'))
        fields = {f.name for f in dataclasses.fields(cls)}
        if not options <= fields:
            raise ValueError(f"--vs-torch: unknown setup {spec!r}: 'eager' or any of {sorted(fields)} joined by '+'")
        return cls(**{name: True for name in options})

    @property
    def label(self) -> str:
        return '+'.join(f.name for f in dataclasses.fields(self) if getattr(self, f.name)) or 'eager'


def torch_step(
    mode: str,
    setup: TorchSetup,
    name: str,
    kwargs: dict,
    batch: dict[str, np.ndarray],
    threads: int,
    lr: float,
    momentum: float,
    device: str = 'cpu',
):
    """A closure running, on the timm model `name(**kwargs)` on `device` ('cpu' or 'cuda'), one PyTorch train step
    (`mode='step'`: BCE loss, SGD, as the classifier does) or one eval-mode forward under `torch.inference_mode()`
    (`'predict'`), as `setup` says. Each call waits for its result (`.item()`), so a call's time is the work's."""
    import timm
    import torch

    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format
    model = timm.create_model(name, pretrained=False, num_classes=1, **kwargs).to(device, memory_format=memory_format)
    images = torch.from_numpy(np.ascontiguousarray(batch['image'].transpose(0, 3, 1, 2)))
    images = images.to(device).contiguous(memory_format=memory_format)
    forward = torch.compile(model) if setup.compile else model
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=setup.amp)
    if mode == 'predict':
        model.eval()

        def predict():
            with torch.inference_mode(), autocast:
                return float(forward(images)[0, 0])

        return predict
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    labels = torch.from_numpy(batch['label'].astype(np.float32)).to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(forward(images)[:, 0].float(), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def serve_torch() -> None:
    """The child side of `TorchProcess`: reads the `torch_step` arguments, then per message N (until 'stop') runs N
    steps back to back and answers their mean (wall seconds, CPU seconds); pickles over stdin/stdout (anything else
    printed goes to stderr)."""
    replies = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        step = torch_step(*pickle.load(requests))
    except Exception as error:
        pickle.dump(f'{type(error).__name__}: {error}', replies)
        replies.flush()
        raise
    pickle.dump('ready', replies)
    replies.flush()
    while (calls := pickle.load(requests)) != 'stop':
        cpu = time.process_time()
        seconds = timed(lambda: [step() for _ in range(calls)])
        pickle.dump((seconds / calls, (time.process_time() - cpu) / calls), replies)
        replies.flush()


class TorchProcess:
    """The PyTorch step in a child Python process (no JAX in it) on the same cores and with the same allocator.

    In one process, JAX's and PyTorch's thread pools compete: measured here, PyTorch's Xception step took 3.7 s alone
    and 4.9-6.9 s when it alternated with the fdx step in the same process."""

    def __init__(self, *step_args):
        command = [sys.executable, '-c', 'from fdx.bench import serve_torch; serve_torch()']
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send(step_args)
        message = self._receive()
        if message != 'ready':
            raise RuntimeError(f'bench: the PyTorch step could not be built: {message}')

    def _send(self, message) -> None:
        pickle.dump(message, self.process.stdin)
        self.process.stdin.flush()

    def _receive(self):
        try:
            return pickle.load(self.process.stdout)
        except EOFError:
            raise RuntimeError(f'bench: the PyTorch process exited with code {self.process.wait()}') from None

    def step(self, calls: int = 1) -> tuple[float, float]:
        """(wall, CPU) seconds per step of `calls` steps run back to back."""
        self._send(calls)
        return self._receive()

    def close(self) -> None:
        self._send('stop')
        self.process.wait(30)


def bench_step(args) -> dict[str, Any]:
    """`fdx bench step` and `fdx bench predict` (`args.command`): the compiled program timed, alternating with the
    PyTorch one with `--vs-torch`."""
    import jax

    from fdx import config as config_lib
    from fdx.models import layers

    if args.arch in ARCHS:
        config = classifier_config(args.arch, args.batch, args.size, DTYPES[args.dtype])
    else:  # a bad config spec fails before the process is pinned
        config = config_lib.load_config(args.arch)
        config.batch_size = args.batch or config.batch_size
        config.model.dtype = DTYPES[args.dtype] if args.dtype else config.model.get('dtype', 'float32')
        config.init = ()  # timing does not need pretrained weights
    if args.calls < 1:
        raise ValueError(f'--calls must be >= 1 (calls per timed run), got {args.calls}')
    threads = pin_threads(args.threads)
    layers.CONV_IMPL = args.conv
    batch_size = config.batch_size
    size = set_input_size(config, args.size)
    batch = example_batch(config, batch_size)
    images = int(np.prod(batch['image'].shape[:-3])) if 'image' in batch else batch_size
    predict = args.command == 'predict'
    result = {
        'command': args.command,
        'arch': args.arch,
        'batch': batch_size,
        'size': size,
        'dtype': config.model.get('dtype', 'float32'),
        'threads': threads,
        'calls': args.calls,
        'pause_s': args.pause,
        'conv': args.conv,
        'cpu_kernels': cpu_kernels_status(),
        'machine': machine(),
    }
    setup, compiled, first, global_batch, compile_times = compiled_step(config, batch, predict)
    result.update(compile_times)
    result['xla'] = xla_costs(compiled)

    with jax.set_mesh(setup.mesh):
        holder = {'state': first}

        def fdx_step():
            if predict:
                jax.block_until_ready(compiled(first, global_batch))
            else:  # the state is donated: each step runs on the previous one's
                holder['state'], metrics = compiled(holder['state'], global_batch)
                jax.block_until_ready((holder['state'], metrics))

        def fdx_timed(calls: int = 1):
            cpu = time.process_time()
            return timed(lambda: [fdx_step() for _ in range(calls)]) / calls, (time.process_time() - cpu) / calls

        runs = {'fdx': fdx_timed}
        torch_processes = {}
        if args.vs_torch:
            if args.arch not in ARCHS:
                raise ValueError(f'--vs-torch needs --arch in {", ".join(ARCHS)}, got {args.arch!r}')
            _, _, timm_name, timm_kwargs = ARCHS[args.arch]
            optim = float(config.optim.lr), float(config.optim.momentum)
            device = torch_device()
            result['torch_device'] = device
            for torch_setup in args.vs_torch:
                process = TorchProcess(
                    args.command, torch_setup, timm_name, timm_kwargs, batch, threads, *optim, device
                )
                torch_processes[torch_setup.label] = process
                runs[f'torch {torch_setup.label}'] = process.step
        seconds, cpu_seconds = {name: [] for name in runs}, {name: [] for name in runs}
        for name, fn in runs.items():
            for _ in range(args.warmup):
                fn()
        for _ in range(args.repeats):  # alternating, so drifts of the machine hit all alike
            for name, fn in runs.items():
                time.sleep(args.pause)  # the other runtime's spinning worker threads go idle
                wall, cpu = fn(args.calls)
                seconds[name].append(wall)
                cpu_seconds[name].append(cpu)
        for process in torch_processes.values():
            process.close()
        if args.profile:
            result['profile'] = profile_step(fdx_step, args.profile)
    figures = {
        name: {
            **spread(times),
            'images_per_s': images / statistics.median(times),
            'times_s': times,
            # CPU time of the process (all threads): robust to other processes on the machine, not to spinning
            'cpu_median_s': statistics.median(cpu_seconds[name]),
        }
        for name, times in seconds.items()
    }
    result['fdx'] = figures.pop('fdx')
    result['fdx']['flops_per_s'] = result['flops'] / result['fdx']['median_s']
    if args.peak:
        n = 2048 if jax.default_backend() == 'cpu' else 8192
        result['peak'] = matmul_peak(n, config.model.get('dtype', 'float32'), warmup=2, repeats=5)
        result['fdx']['fraction_of_peak'] = result['fdx']['flops_per_s'] / result['peak']['peak_flops_per_s']
    if args.vs_torch:
        result['torch'] = {name.removeprefix('torch '): r for name, r in figures.items()}
        result['speedup_vs_torch'] = {
            label: result['fdx']['images_per_s'] / r['images_per_s'] for label, r in result['torch'].items()
        }
    return result


def torch_device() -> str:
    """PyTorch's device for JAX's backend: the same GPU ('cuda'), or the CPU."""
    import jax

    backend = jax.default_backend()
    if backend not in ('cpu', 'gpu'):
        raise ValueError(f'--vs-torch: PyTorch has no {backend} backend here; run it on a CPU or GPU host')
    return 'cuda' if backend == 'gpu' else 'cpu'


def cpu_kernels_status() -> str:
    """Whether the step uses `fdx.models.cpu_kernels` (C++ through jax.ffi) or, and why, their pure-XLA forms."""
    import jax

    from fdx.models import cpu_kernels, layers

    if jax.default_backend() != 'cpu':
        return 'not used (CPU only)'
    reason = 'layers.CPU_KERNELS is False' if not layers.CPU_KERNELS else cpu_kernels.load()
    return 'built (depthwise kernel gradient)' if reason is None else f'pure XLA: {reason}'


def step_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    xla = result['xla']
    rows = [
        ('arch', f'{result["arch"]}, batch {result["batch"]}, {result["size"]}px, {result["dtype"]}'),
        ('threads', str(result['threads'])),
        *[('timed run', f'{result["calls"]} call(s) back to back, after {result["pause_s"]} s idle')]
        * ('calls' in result),
        *[('CPU kernels', result['cpu_kernels'])] * ('cpu_kernels' in result),
        ('compile', f'{result["compile_s"]:.1f} s (lowering {result["lower_s"]:.1f} s)'),
        (
            'flops / step',
            f'{result["flops"] / 1e9:.1f} GFLOP in convolutions and matmuls (XLA counts {xla["flops"] / 1e9:.1f})',
        ),
        ('XLA peak memory', f'{xla.get("peak_bytes", float("nan")) / 2**20:.0f} MiB'),
    ]
    runs = [(f'fdx {result["command"]}', result['fdx'])]
    runs += [(f'torch {result["command"]} ({label})', r) for label, r in result.get('torch', {}).items()]
    for name, r in runs:
        rows.append(
            (
                name,
                f'{r["median_s"] * 1e3:.1f} ms median (min {r["min_s"] * 1e3:.1f}, max {r["max_s"] * 1e3:.1f}, '
                f'IQR {r["iqr_s"] * 1e3:.1f}; {r["runs"]} runs), {r["images_per_s"]:.1f} images/s, '
                f'CPU {r["cpu_median_s"] * 1e3:.0f} ms',
            )
        )
    rows.append(('fdx GFLOP/s', f'{result["fdx"]["flops_per_s"] / 1e9:.1f}'))
    if 'peak' in result:
        peak = result['peak']['peak_flops_per_s']
        rows.append(('of matmul peak', f'{result["fdx"]["fraction_of_peak"]:.1%} (peak {peak / 1e9:.1f} GFLOP/s)'))
    for label, speedup in result.get('speedup_vs_torch', {}).items():
        rows.append((f'fdx / torch ({label})', f'{speedup:.2f}x images/s'))
    if 'profile' in result:
        profile = result['profile']
        rows.append(('profile', f'{profile["op_seconds_per_step"] * 1e3:.0f} ms of XLA ops per step, over threads'))
        rows += [(f'  {kind}', f'{seconds * 1e3:.1f} ms') for kind, seconds in list(profile['kinds'].items())[:8]]
        rows += [(f'  {op}', f'{seconds * 1e3:.1f} ms') for op, seconds in list(profile['ops'].items())[:8]]
    return rows


# --- peak ---------------------------------------------------------------------------------------------------------


def matmul_peak(n: int, dtype: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Best and median FLOP/s of an n×n by n×n matmul (jitted), over `repeats` runs."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.dtype(dtype)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    matmul = jax.jit(jnp.dot).lower(a, b).compile()
    for _ in range(warmup):
        matmul(a, b).block_until_ready()
    seconds = [timed(lambda: matmul(a, b).block_until_ready()) for _ in range(repeats)]
    flops = 2.0 * n**3
    return {
        'n': n,
        'dtype': str(dtype),
        **spread(seconds),
        'peak_flops_per_s': flops / min(seconds),
        'median_flops_per_s': flops / statistics.median(seconds),
    }


def bench_peak(args) -> dict[str, Any]:
    threads = pin_threads(args.threads)
    peak = matmul_peak(args.n, DTYPES[args.dtype], args.warmup, args.repeats)
    return {'command': 'peak', 'threads': threads, 'machine': machine(), **peak}


def peak_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ('matmul', f'{result["n"]}x{result["n"]} @ {result["n"]}x{result["n"]}, {result["dtype"]}'),
        ('threads', str(result['threads'])),
        ('peak', f'{result["peak_flops_per_s"] / 1e9:.1f} GFLOP/s (best of {result["runs"]})'),
        ('median', f'{result["median_flops_per_s"] / 1e9:.1f} GFLOP/s'),
    ]


# --- input pipeline -----------------------------------------------------------------------------------------------

IMAGE_KEYS = ('image', 'image_hq', 'image_lq')


def input_data_config(args):
    """The data config `fdx bench input` reads: an experiment config's (`--config`, its train view and fields) or a
    built-in view of `--name` (`--view`), on the records in `--dir`."""
    from fdx import config as config_lib
    from fdx import input as input_lib
    from fdx import methods as methods_lib
    from fdx.input import registry

    if args.config:
        config = config_lib.load_config(args.config)
        methods_lib.method_class(config)  # a method's module may register the views it reads
        config.data.dir = args.dir
        set_input_size(config, args.size)
        return config.data, args.batch or config.batch_size
    if not args.name:
        raise ValueError('fdx bench input: give --name DATASET (with --view) or --config FILE.py[:ARG]')
    fields = registry.view_fields(registry.view_class(args.view))
    view = {next((k for k in ('size', 'backbone_size') if k in fields), 'size'): args.size or 224}
    view.update({k: getattr(args, k) for k in ('quality', 'hq', 'lq', 'frames') if getattr(args, k)})
    builder = {'builder_config': args.builder_config} if args.builder_config else {}
    data = input_lib.data_config(name=args.name, dir=args.dir, train_view=args.view, **builder, **{args.view: view})
    return data, args.batch or 8


def bench_input(args) -> dict[str, Any]:
    """Batches/s of the training pipeline of prepared records after its first batch (worker start-up excluded)."""
    from fdx import input as input_lib
    from fdx.input import pipeline

    data, batch = input_data_config(args)
    dataset = pipeline.train_dataset(
        input_lib.build_source(data, 'train'),
        global_batch_size=batch,
        seed=0,
        process_index=0,
        process_count=1,
        transform=input_lib.build_transform(data, 'train'),
    )
    start = time.perf_counter()
    with pipeline.make_loader(dataset, workers=args.workers, prefetch_buffer=args.prefetch) as iterator:
        first = next(iterator)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.batches):
            next(iterator)
        seconds = time.perf_counter() - start
    images = sum(int(np.prod(first[k].shape[:-3])) for k in IMAGE_KEYS if k in first)
    view = data.get(data.train_view) or {}
    images_per_s = args.batches * images / seconds
    cores = max(1, args.workers)  # the processes that run the view: the main one's thread, or the workers
    feed = {}
    if args.feed:
        feed = {'feed_images_per_s': args.feed, 'cores_needed': math.ceil(args.feed / (images_per_s / cores))}
    return {
        'command': 'input',
        'view': data.train_view,
        'workers': args.workers,
        'batch': batch,
        'size': next((view[k] for k in ('size', 'backbone_size') if k in view), None),
        'batches': args.batches,
        'machine': machine(),
        'first_batch_s': first_s,
        'seconds': seconds,
        'examples_per_s': args.batches * batch / seconds,
        'images_per_s': images_per_s,
        'cores': cores,
        'images_per_s_per_core': images_per_s / cores,
        **feed,
    }


def input_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ('view', f'{result["view"]}, batch {result["batch"]}, {result["size"]}px'),
        ('workers', str(result['workers'])),
        ('first batch', f'{result["first_batch_s"]:.2f} s'),
        ('throughput', f'{result["images_per_s"]:.1f} images/s ({result["examples_per_s"]:.1f} examples/s)'),
        ('per core', f'{result["images_per_s_per_core"]:.1f} images/s on {result["cores"]} core(s)'),
        *(
            [('to feed', f'{result["feed_images_per_s"]:g} images/s: {result["cores_needed"]} cores')]
            if 'cores_needed' in result
            else []
        ),
    ]


# --- preprocessing ------------------------------------------------------------------------------------------------


def bench_prepare(args, prepare_args: list[str]) -> dict[str, Any]:
    """`fdx prepare` from scratch into a temporary folder (resuming would skip the work); records/s and frames/s."""
    from fdx.input import prepare

    out = Path(tempfile.mkdtemp(prefix='fdx-bench-prepare-'))
    try:
        argv = [args.dataset, '--src', args.src, '--out', str(out), '--workers', str(args.workers), *prepare_args]
        start = time.perf_counter()
        code = prepare.main(argv)
        seconds = time.perf_counter() - start
        manifests = list(out.glob(f'{args.dataset}/*/*/manifest.json'))
        if not manifests:
            raise RuntimeError(f'fdx prepare {" ".join(argv)} failed with status {code}')
        manifest = json.loads(manifests[0].read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        'command': 'prepare',
        'dataset': args.dataset,
        'workers': args.workers,
        'prepare_args': prepare_args,
        'machine': machine(),
        'videos': manifest['videos'],
        'records': manifest['records'],
        'seconds': seconds,
        'frames_per_s': manifest['records'] / seconds,  # face crops written (one record: every quality of a frame)
        'videos_per_s': manifest['videos'] / seconds,
    }


def prepare_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ('dataset', f'{result["dataset"]}: {result["videos"]} videos → {result["records"]} records'),
        ('workers', str(result['workers'])),
        ('time', f'{result["seconds"]:.1f} s'),
        ('throughput', f'{result["frames_per_s"]:.1f} frames/s ({result["videos_per_s"]:.2f} videos/s)'),
    ]


# --- detection ----------------------------------------------------------------------------------------------------


def bench_detect(args) -> dict[str, Any]:
    """`fdx detect`'s frames/s end to end on real videos (decode, face detection and crop, the eval view and the
    model), per stage; the first video is scored once untimed (compilation)."""
    from fdx.detect import Detector

    detector = Detector.from_workdir(args.workdir, args.step)
    detector.score(args.videos[0])
    results = [detector.score(path) for path in args.videos for _ in range(args.repeats)]
    failed = [f'{r.path}: {r.error}' for r in results if not r.ok]
    if failed:
        raise ValueError(f'fdx bench detect: inputs not scored ({"; ".join(sorted(set(failed)))})')
    stages = {k: sum(r.seconds.get(k, 0.0) for r in results) for k in ('decode', 'faces', 'predict')}
    frames = sum(len({f for item in r.items for f in np.ravel(item['frame_index'])}) for r in results)
    seconds = sum(stages.values())
    return {
        'command': 'detect',
        'method': detector.restored.config.method,
        'videos': len(args.videos),
        'repeats': args.repeats,
        'machine': machine(),
        'frames': frames,
        'seconds': seconds,
        'stage_seconds': stages,
        'frames_per_s': frames / seconds,
    }


def detect_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    stages = result['stage_seconds']
    return [
        ('method', f'{result["method"]}: {result["videos"]} videos x {result["repeats"]}, {result["frames"]} frames'),
        ('time', ', '.join(f'{k} {v:.2f} s' for k, v in stages.items()) + f' ({result["seconds"]:.2f} s)'),
        ('throughput', f'{result["frames_per_s"]:.1f} frames/s end to end'),
    ]


# --- summary ------------------------------------------------------------------------------------------------------


def bench_summary(args) -> dict[str, Any]:
    """One markdown table of `fdx bench step|predict --json` files: a row per PyTorch setup (or one without), and a
    row naming the log of each run that failed (a JSON file `{"failed": NAME, "log": PATH}` that the caller wrote)."""
    rows = []
    for path in args.files:
        result = summary_input(Path(path))
        if 'failed' in result:
            log = Path(result['log'])
            lines = log.read_text(errors='replace').strip().splitlines() if log.is_file() else []
            rows.append([result['failed'], 'failed', lines[-1] if lines else f'no log at {log}', '', '', '', ''])
            continue
        what = f'{result["command"]} {Path(result["arch"]).name} @{result["size"]}, batch {result["batch"]}'
        fdx = f'{result["dtype"]}: {result["fdx"]["images_per_s"]:.1f}'
        flops = '—'  # older files hold XLA's count only
        if 'flops' in result:
            flops = f'{result["fdx"]["flops_per_s"] / 1e9:.1f}'
            if 'fraction_of_peak' in result['fdx']:
                flops += f' ({result["fdx"]["fraction_of_peak"]:.0%} of peak)'
        torch = result.get('torch') or {'': None}
        for label, r in torch.items():
            figures = (
                ['', ''] if r is None else [f'{r["images_per_s"]:.1f}', f'{result["speedup_vs_torch"][label]:.2f}×']
            )
            rows.append([what, result['machine']['devices'][0], fdx, flops, label or '—', *figures])
    header = ['run', 'device', 'fdx images/s', 'fdx GFLOP/s', 'PyTorch setup', 'PyTorch images/s', 'fdx / PyTorch']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return {'command': 'summary', 'markdown': '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])}


def summary_input(path: Path) -> dict[str, Any]:
    """One `fdx bench step|predict --json` file (or a failure record), or a one-line error naming it."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f'{path}: not a readable JSON file ({error}); give `fdx bench step|predict --json` files')
    wanted = ('log',) if 'failed' in result else ('command', 'arch', 'size', 'batch', 'dtype', 'fdx', 'machine')
    missing = [key for key in wanted if key not in result]
    if missing:
        raise ValueError(f'{path}: no {", ".join(missing)}: not written by `fdx bench step|predict --json`')
    return result


def torch_setups(specs: str) -> list[TorchSetup]:
    """`--vs-torch SETUP,...`, with TorchSetup.parse's message as argparse's error."""
    try:
        return [TorchSetup.parse(spec) for spec in specs.split(',')]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix('--vs-torch: ')) from None


# --- command line -------------------------------------------------------------------------------------------------

TABLES = {
    'step': step_table,
    'predict': step_table,
    'peak': peak_table,
    'input': input_table,
    'prepare': prepare_table,
    'detect': detect_table,
}


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fdx bench', description=__doc__.split('\n\n')[0])
    commands = p.add_subparsers(dest='command', required=True)

    def add(name, help_):
        sub = commands.add_parser(name, help=help_)
        sub.add_argument('--json', help='also write the figures to this JSON file')
        return sub

    for name, what in (('step', 'the compiled train step'), ('predict', "the compiled eval-mode forward (`predict`)")):
        step = add(name, f'time {what} (and the PyTorch one with --vs-torch)')
        step.add_argument('--arch', required=True, help=f'{", ".join(ARCHS)}, or an experiment config FILE.py[:ARG]')
        step.add_argument('--batch', type=int, help='global batch (default: 8, or the config’s)')
        step.add_argument('--size', type=int, help='image side (default: 224, or the config’s data.size)')
        step.add_argument('--dtype', choices=DTYPES, help='computation dtype (default f32, or the config’s)')
        step.add_argument(
            '--vs-torch',
            nargs='?',
            const=[TorchSetup()],
            type=torch_setups,
            metavar='SETUP,...',
            help=f'also time the timm model’s {name}, alternating; each SETUP is eager (the default) or any of amp, '
            'channels_last, compile joined by + (e.g. amp+channels_last+compile)',
        )
        step.add_argument('--threads', type=int, help='cores to pin and threads for both frameworks (default: all)')
        step.add_argument('--conv', choices=('auto', 'matmul', 'lax'), default='auto', help='layers.CONV_IMPL')
        step.add_argument('--warmup', type=int, default=2)
        step.add_argument('--repeats', type=int, default=10)
        step.add_argument('--pause', type=float, default=0.5, help='seconds of idle before each timed run')
        step.add_argument(
            '--calls',
            type=int,
            default=1,
            help='calls per timed run, back to back, timed as their mean: 1 (default) times one call after the '
            'pause (a request after idle), more a stream (the frames of a video)',
        )
        step.add_argument('--profile', metavar='DIR', help='then trace 3 runs with jax.profiler into DIR; time per op')
        step.add_argument('--peak', action='store_true', help='also measure matmul FLOP/s: the fraction of peak')

    peak = add('peak', 'matmul FLOP/s of this machine')
    peak.add_argument('--n', type=int, default=2048, help='matrix side')
    peak.add_argument('--dtype', choices=DTYPES, default='f32')
    peak.add_argument('--threads', type=int)
    peak.add_argument('--warmup', type=int, default=2)
    peak.add_argument('--repeats', type=int, default=10)

    inp = add('input', 'images/s of the training input pipeline on prepared records')
    inp.add_argument('--dir', required=True, help='DATA_DIR given to `fdx prepare --out`')
    inp.add_argument('--name', help='prepared dataset: ffpp | celebdf | dfdm (without --config)')
    inp.add_argument('--view', default='frame', help='a registered view: frame, clip, pair, residual, ...')
    inp.add_argument('--config', help='an experiment config FILE.py[:ARG]: its train view, fields and batch')
    inp.add_argument('--workers', type=int, default=0)
    inp.add_argument('--batch', type=int, help='default: 8, or the config’s')
    inp.add_argument('--size', type=int, help='default: 224, or the config’s')
    inp.add_argument('--batches', type=int, default=20, help='batches timed after the first')
    inp.add_argument('--prefetch', type=int, default=2)
    inp.add_argument(
        '--feed', type=float, metavar='IMAGES_PER_S', help='a step rate to feed: prints the cores it needs at this rate'
    )
    inp.add_argument('--quality', help='prepared quality (frame, clip, residual)')
    inp.add_argument('--hq', help='pair: high quality')
    inp.add_argument('--lq', help='pair: low quality')
    inp.add_argument('--frames', type=int, help='clip: frames per clip')
    inp.add_argument('--builder-config', help='prepared builder config, when there are several')

    det = add('detect', '`fdx detect` frames/s end to end on videos (decode, faces, predict)')
    det.add_argument('videos', nargs='+', metavar='VIDEO')
    det.add_argument('--workdir', required=True)
    det.add_argument('--step', help="a checkpoint step, 'best' or 'latest' (default: best if selected, else latest)")
    det.add_argument('--repeats', type=int, default=1, help='times each video is scored (timed)')

    summary = add('summary', 'one markdown table of `fdx bench step|predict --json` files (launch/device_check.sh)')
    summary.add_argument('files', nargs='+', metavar='JSON')

    prep = add('prepare', '`fdx prepare` frames/s; unknown options go to `fdx prepare`')
    prep.add_argument('dataset', help='ffpp | celebdf | dfdm')
    prep.add_argument('--src', required=True)
    prep.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)))
    return p


def main(argv: Sequence[str]) -> int:
    """`fdx bench {step,predict,input,prepare,detect,peak} [options]`."""
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != 'prepare':
        parser().error(f'unrecognized arguments: {" ".join(extra)}')
    from fdx import sharding

    if getattr(args, 'vs_torch', None):  # JAX takes GPU memory as it needs it, and the PyTorch children find theirs
        os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    if args.command != 'summary':  # stdout, with the table
        print(f'fdx bench {args.command} on {sharding.describe_devices()}', flush=True)
    if args.command in ('step', 'predict'):
        if args.arch in ARCHS:
            args.batch, args.size, args.dtype = args.batch or 8, args.size or 224, args.dtype or 'f32'
        result = bench_step(args)
    elif args.command == 'peak':
        result = bench_peak(args)
    elif args.command == 'input':
        result = bench_input(args)
    elif args.command == 'detect':
        result = bench_detect(args)
    elif args.command == 'summary':
        result = bench_summary(args)
    else:
        result = bench_prepare(args, extra)
    print(result['markdown'] if args.command == 'summary' else format_table(TABLES[args.command](result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + '\n')
    return 0
