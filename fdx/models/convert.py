"""PyTorch → flax weight conversion for the backbones, with an explicit name map and full key/shape checks.

    module, variables = load_torch('legacy_xception', 'xception.pth')
    logits, _ = module.apply(variables, images_nhwc, train=False)   # == the PyTorch model's logits

Sources: timm state dicts (`legacy_xception`, `resnet50`, `vit_base_patch16_224`, torchvision's `resnet50` too) and
the FaceForensics++/Cadene Xception file (2-D pointwise weights, `last_linear`/`fc` classifier). Files are read with
`torch.load(weights_only=True)`: tensors only, nothing arbitrary is unpickled. `fdx convert-weights` writes the result
as an orbax checkpoint (see `fdx.models.pretrained`).
"""

import argparse
import dataclasses
import fnmatch
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fdx.models import pretrained
from fdx.models.resnet import resnet50
from fdx.models.vit import VisionTransformer
from fdx.models.xception import BLOCKS, Xception

Path_ = tuple[str, ...]


def _xception_module(path: str) -> str:
    """timm/Cadene module path → flax module path ('/'-joined)."""
    if path in ('fc', 'last_linear', 'last_linear.1'):  # `last_linear.1`: FF++'s Sequential(Dropout, Linear)
        return 'head'
    if m := re.fullmatch(r'(conv[34])\.(conv1|pointwise)', path):
        return f'{m[1]}/{"depthwise" if m[2] == "conv1" else "pointwise"}'
    if m := re.fullmatch(r'(block\d+)\.rep\.(\d+)(?:\.(conv1|pointwise))?', path):
        block, index, part = m[1], int(m[2]), m[3]
        # rep = [ReLU, SepConv, BN] * reps, without the first ReLU when the block does not start with one.
        position = index + (0 if BLOCKS[block][3] else 1)
        number = position // 3 + 1
        if part:  # a separable convolution's depthwise / pointwise conv
            return f'{block}/sepconv{number}/{"depthwise" if part == "conv1" else "pointwise"}'
        return f'{block}/bn{number}'
    return path.replace('.', '/')  # conv1, bn1, ..., blockN.skip, blockN.skipbn


def _resnet_module(path: str) -> str:
    if path == 'fc':
        return 'head'
    if m := re.fullmatch(r'(layer\d)\.(\d+)\.(.+)', path):
        rest = {'downsample.0': 'downsample_conv', 'downsample.1': 'downsample_bn'}.get(m[3], m[3])
        return f'{m[1]}/block{m[2]}/{rest}'
    return path


def _vit_module(path: str) -> str:
    if path == 'patch_embed.proj':
        return 'patch_embed'
    if m := re.fullmatch(r'blocks\.(\d+)\.(.+)', path):
        return f'block{m[1]}/{m[2].replace(".", "/")}'
    return path


@dataclasses.dataclass(frozen=True)
class Arch:
    build: Callable[..., nn.Module]
    module_path: Callable[[str], str]
    head_key: tuple[str, ...]  # candidate torch keys of the classifier weight (to infer num_classes)
    input_size: int  # an input size to trace the model at


ARCHS = {
    'legacy_xception': Arch(
        Xception, _xception_module, ('fc.weight', 'last_linear.weight', 'last_linear.1.weight'), 299
    ),
    'resnet50': Arch(resnet50, _resnet_module, ('fc.weight',), 224),
    'vit_base_patch16_224': Arch(VisionTransformer, _vit_module, ('head.weight',), 224),
}

# Torch leaf name → (flax collection, flax leaf name) for normalisation and bias leaves.
_LEAVES = {'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var'), 'bias': ('params', 'bias')}
_IGNORED = ('num_batches_tracked',)  # BatchNorm bookkeeping; no flax counterpart


def _not_a_state_dict(path: Path, reason: str) -> ValueError:
    return ValueError(
        f'{path}: not a plain PyTorch state dict ({reason}); fdx reads tensors only and never unpickles arbitrary '
        'objects: save one with torch.save(model.state_dict(), path)'
    )


def _is_torch_file(path: Path) -> bool:
    """Whether `path` starts like a `torch.save` file: a zip archive, or the legacy format's pickled magic number."""
    import torch

    magic = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[2:-1]  # LONG1 opcode and its bytes
    with path.open('rb') as file:
        head = file.read(64)
    return head.startswith(b'PK\x03\x04') or magic in head


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch checkpoint as {name: float32 array}; unwraps `state_dict`/`model` and `module.`/`model.`."""
    import torch  # the `torch` extra; only conversion needs it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    if not _is_torch_file(path):
        raise _not_a_state_dict(path, 'not a file written by torch.save')
    try:
        with warnings.catch_warnings():  # the weights-only unpickler warns about pickle protocols it may not support
            warnings.simplefilter('ignore', UserWarning)
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:  # refused by weights_only; torch's advice would be to unpickle anything
        raise _not_a_state_dict(path, 'it holds objects other than tensors') from e
    except Exception as e:  # truncated or corrupt archives
        raise _not_a_state_dict(path, 'truncated or corrupt') from e
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise _not_a_state_dict(path, f'it holds a {type(obj).__name__}, not a dict of tensors')
    others = [f'{k!r}: {type(v).__name__}' for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise _not_a_state_dict(path, f'{len(others)} non-tensor entries: {", ".join(others[:3])}')
    for prefix in ('module.', 'model.'):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return {k: v.detach().float().numpy() for k, v in obj.items()}


def _to_flax(name: str, value: np.ndarray, arch: Arch, targets: dict[Path_, Any]) -> tuple[Path_, np.ndarray]:
    """Maps one torch tensor to (flax path incl. collection, array in flax layout)."""
    module, _, leaf = name.rpartition('.')
    base = tuple(arch.module_path(module).split('/')) if module else ()
    if leaf in _LEAVES:
        collection, flax_leaf = _LEAVES[leaf]
        return (collection, *base, flax_leaf), value
    if leaf != 'weight':  # a raw parameter such as cls_token or pos_embed
        return ('params', *base, leaf), value
    if ('params', *base, 'scale') in targets:  # BatchNorm / LayerNorm
        return ('params', *base, 'scale'), value
    kernel = targets.get(('params', *base, 'kernel'))
    if kernel is not None and len(kernel.shape) == 4 and value.ndim == 2:  # Cadene's 2-D pointwise weights
        value = value[:, :, None, None]
    if value.ndim == 4:  # conv [out, in/groups, kh, kw] → [kh, kw, in/groups, out]
        value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:  # linear [out, in] → [in, out]
        value = value.T
    return ('params', *base, 'kernel'), value


def convert_state_dict(
    arch_name: str, state_dict: dict[str, np.ndarray], *, skip: Sequence[str] = (), **model_kwargs
) -> tuple[nn.Module, dict]:
    """Converts a state dict into `(module, variables)`.

    `skip` holds glob patterns of torch keys to leave out on purpose (e.g. `blocks.1[01].*` for a shallower ViT).
    Raises ValueError listing every unused torch key, missing flax variable and shape mismatch.
    """
    if arch_name not in ARCHS:
        raise ValueError(f'unknown arch {arch_name!r}; choose from {", ".join(ARCHS)}')
    arch = ARCHS[arch_name]
    if 'num_classes' not in model_kwargs:
        head = next((state_dict[k] for k in arch.head_key if k in state_dict), None)
        model_kwargs['num_classes'] = 0 if head is None else head.shape[0]
    module = arch.build(**model_kwargs)
    size = arch.input_size
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    targets = traverse_util.flatten_dict(abstract)

    flat, unused, mismatched, seen = {}, [], [], set()
    for name, value in state_dict.items():
        if name.rpartition('.')[2] in _IGNORED or any(fnmatch.fnmatchcase(name, p) for p in skip):
            continue
        path, value = _to_flax(name, value, arch, targets)
        seen.add(path)
        if path not in targets:
            unused.append(f'{name} (→ {"/".join(path)})')
        elif tuple(targets[path].shape) != value.shape:
            mismatched.append(f'{name} {value.shape} → {"/".join(path)} {tuple(targets[path].shape)}')
        else:
            flat[path] = value
    missing = ['/'.join(p) for p in targets if p not in seen]
    problems = [
        f'{title} ({len(items)}):\n  ' + '\n  '.join(items)
        for title, items in (
            ('unused torch keys', unused),
            ('missing flax variables', missing),
            ('shape mismatches', mismatched),
        )
        if items
    ]
    if problems:
        raise ValueError(f'cannot convert to {arch_name}:\n' + '\n'.join(problems))
    return module, traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def load_torch(arch_name: str, path: str | Path, *, skip: Sequence[str] = (), **model_kwargs) -> tuple[nn.Module, dict]:
    """Reads a PyTorch checkpoint and converts it: `module.apply(variables, x_nhwc, train=False)` matches torch."""
    return convert_state_dict(arch_name, read_state_dict(path), skip=skip, **model_kwargs)


def main(argv: Sequence[str]) -> int:
    """`fdx convert-weights`: PyTorch state dict → orbax checkpoint of flax variables."""
    parser = argparse.ArgumentParser(prog='fdx convert-weights', description=main.__doc__)
    parser.add_argument('--arch', required=True, choices=sorted(ARCHS))
    parser.add_argument('--src', required=True, help='PyTorch checkpoint (.pth / .pt / .bin state dict)')
    parser.add_argument('--out', required=True, help='output directory (must not exist)')
    parser.add_argument('--num-classes', type=int, help='default: taken from the checkpoint\'s classifier')
    parser.add_argument('--skip', action='append', default=[], help='glob of torch keys to leave out (repeatable)')
    args = parser.parse_args(argv)
    kwargs = {} if args.num_classes is None else {'num_classes': args.num_classes}
    module, variables = load_torch(args.arch, args.src, skip=args.skip, **kwargs)
    pretrained.save_variables(
        args.out,
        variables,
        arch=args.arch,
        model_kwargs={'num_classes': module.num_classes},
        source=str(Path(args.src).absolute()),
    )
    print(
        f'wrote {args.out}: {args.arch}, {pretrained.count_params(variables):,} parameters, '
        f'num_classes={module.num_classes}'
    )
    return 0


def load_converted(directory: str | Path) -> tuple[nn.Module, dict]:
    """`(module, variables)` from a directory written by `fdx convert-weights`."""
    variables, meta = pretrained.load_variables(directory)
    return ARCHS[meta['arch']].build(**meta['model_kwargs']), variables
