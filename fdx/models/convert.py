"""PyTorch → flax weight conversion for the backbones and published detectors, with an explicit name map and full
key/shape checks.

    module, variables = load_torch('legacy_xception', 'xception.pth')
    logits, _ = module.apply(variables, images_nhwc, train=False)   # == the PyTorch model's logits

Backbones: timm state dicts (`legacy_xception`, `resnet50`, `vit_base_patch16_224`, torchvision's `resnet50` too) and
the Cadene Xception file (2-D pointwise weights, `last_linear`/`fc` classifier). Detectors (`DETECTORS`), each a
network inside a wrapper module whose attribute name prefixes the keys:

- `ffpp_xception`: FaceForensics++'s Xception (ondyari/FaceForensics `classification/network/models.py`
  `TransferModel`): `model.` + Cadene's Xception (`classification/network/xception.py`), its `last_linear` replaced by
  `Linear(2048, 2)`, or `Sequential(Dropout, Linear)` (`last_linear.1.*`) when trained with dropout. The released
  models are whole pickled modules (`torch.load(path)` in `classification/detect_from_video.py`), which fdx does not
  unpickle: re-save a trusted one from FF++'s `classification/` directory (its `network` package importable) with
  `torch.save(torch.load(p, map_location='cpu', weights_only=False).state_dict(), out)`.
- `deepfakebench_xception`: SCLBD/DeepfakeBench `training/detectors/xception_detector.py` `XceptionDetector`:
  `backbone.` + `training/networks/xception.py` `Xception` (FF++'s, `mode: original`): `last_linear` as above, plus
  `adjust_channel.*`, built in every mode but run only in `adjust_channel` mode (left out).
- `deepfakebench_recce`: DeepfakeBench `training/detectors/recce_detector.py` `RecceDetector`: `model.` + `Recce`
  (`encoder.*`: timm 0.6.12's `xception`, the legacy Xception; `fc`, `attention.{gated,h}`, `reasoning.*`,
  `decoder1`…`decoder6`) onto `fdx.models.panet.Recce`; its `backbone.*` (an Xception the detector builds but never
  runs) and `model.encoder.fc.*` (timm's ImageNet classifier, unused by `Recce`) are left out.

DeepfakeBench's trainer saves `detector.state_dict()` as is (`training/trainer/trainer.py` `save_ckpt`; `module.`
under DDP, stripped here). Files are read with `torch.load(weights_only=True)`: tensors only, nothing arbitrary is
unpickled. `fdx convert-weights` writes the result as an orbax checkpoint (see `fdx.models.pretrained`), with the
detector's input `preprocessing` in its metadata.
"""

import argparse
import dataclasses
import fnmatch
import pickle
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fdx.models import pretrained
from fdx.models.panet import Recce
from fdx.models.resnet import resnet50
from fdx.models.vit import VisionTransformer
from fdx.models.xception import BLOCKS, Xception

Path_ = tuple[str, ...]


_SEPARABLE = {'conv1': 'depthwise', 'pointwise': 'pointwise'}  # SeparableConv2d's convolutions


def _rep_module(block: str, index: int, part: str | None, start_with_relu: bool) -> str:
    """A Xception `Block`'s `rep.{index}[.part]` → its flax path. rep = [ReLU, SepConv, BN] * reps, without the first
    ReLU when the block does not start with one."""
    number = (index + (0 if start_with_relu else 1)) // 3 + 1
    return f'{block}/sepconv{number}/{_SEPARABLE[part]}' if part else f'{block}/bn{number}'


def _xception_module(path: str) -> str:
    """timm/Cadene module path → flax module path ('/'-joined)."""
    if path in ('fc', 'last_linear', 'last_linear.1'):  # `last_linear.1`: Sequential(Dropout, Linear)
        return 'head'
    if m := re.fullmatch(r'(conv[34])\.(conv1|pointwise)', path):
        return f'{m[1]}/{_SEPARABLE[m[2]]}'
    if (m := re.fullmatch(r'(block\d+)\.rep\.(\d+)(?:\.(conv1|pointwise))?', path)) and m[1] in BLOCKS:
        return _rep_module(m[1], int(m[2]), m[3], BLOCKS[m[1]][3])
    return path.replace('.', '/')  # conv1, bn1, ..., blockN.skip, blockN.skipbn


# DeepfakeBench `Recce` (training/detectors/recce_detector.py) → `fdx.models.panet.Recce`, besides the encoder and the
# decoders' separable convolutions.
_RECCE_MODULES = {
    'fc': 'head',
    'attention.gated.0': 'guided_attention/gate_conv3x3',
    'attention.gated.2': 'guided_attention/gate_conv1x1',
    'attention.h.0': 'guided_attention/conv',
    'attention.h.1': 'guided_attention/bn',
    'reasoning.va_embedding.0': 'graph_reasoning/a_embed1',
    'reasoning.va_embedding.2': 'graph_reasoning/a_embed2',
    'reasoning.va_gated_b.0': 'graph_reasoning/b_gate',
    'reasoning.va_gated_c.0': 'graph_reasoning/c_gate',
    'reasoning.vb_embedding.0': 'graph_reasoning/b_embed1',
    'reasoning.vb_embedding.2': 'graph_reasoning/b_embed2',
    'reasoning.vc_embedding.0': 'graph_reasoning/c_embed1',
    'reasoning.vc_embedding.2': 'graph_reasoning/c_embed2',
    'reasoning.reweight_ab.0': 'graph_reasoning/b_score',
    'reasoning.reweight_ac.0': 'graph_reasoning/c_score',
    'reasoning.reproject.0': 'graph_reasoning/reproject1',
    'reasoning.reproject.2': 'graph_reasoning/reproject2',
    'decoder6.0': 'decoder6',
}


def _recce_module(path: str) -> str:
    if path in _RECCE_MODULES:
        return _RECCE_MODULES[path]
    if path.startswith('encoder.'):  # timm's Xception; fdx's Recce runs its layers under their own names
        return _xception_module(path.removeprefix('encoder.'))
    if m := re.fullmatch(r'(decoder[135])\.(?:1\.(conv1|pointwise)|2)', path):  # Upsample, SepConv, BN, ReLU
        return f'{m[1]}/sepconv/{_SEPARABLE[m[2]]}' if m[2] else f'{m[1]}/bn'
    if m := re.fullmatch(r'(decoder[24])\.rep\.(\d+)(?:\.(conv1|pointwise))?', path):  # Block(c, c, 3, 1)
        return _rep_module(m[1], int(m[2]), m[3], True)
    return path.replace('.', '/')


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
    module_path: Callable[[str], str]  # torch module path (below `prefix`) → flax module path
    head_key: tuple[str, ...]  # candidate torch keys (below `prefix`) of the classifier weight, to infer num_classes
    input_size: int  # an input size to trace the model at
    prefix: str = ''  # a detector's attribute holding the network: every other key is an error unless left out
    left_out: Mapping[str, str] = dataclasses.field(default_factory=dict)  # glob of torch keys → why they go unused
    preprocessing: Mapping[str, Any] | None = None  # what the detector was trained on, for the checkpoint's metadata


_XCEPTION_HEADS = ('fc.weight', 'last_linear.weight', 'last_linear.1.weight')
# Both repositories: RGB in [-1, 1] (mean = std = 0.5) and two softmax outputs, P(fake) = softmax(logits)[:, 1].
_XCEPTION_IO = {
    'normalisation': 'xception',
    'mean': [0.5, 0.5, 0.5],
    'std': [0.5, 0.5, 0.5],
    'class_names': ['real', 'fake'],
    'output': 'softmax',
}
# DeepfakeBench: training/config/detector/{xception,recce}.yaml (resolution, mean, std),
# training/dataset/abstract_dataset.py (RGB, cv2.INTER_CUBIC resize to the resolution),
# preprocessing/preprocess.py (dlib detector and 81 landmarks, 5-point similarity alignment, margin scale 1.3).
_DEEPFAKEBENCH_INPUT = {
    'input_size': 256,
    'resize': 'cv2.INTER_CUBIC',
    'faces': 'dlib detector, 81 landmarks, 5-point similarity alignment, margin scale 1.3',
    **_XCEPTION_IO,
}
DETECTORS = {
    'ffpp_xception': Arch(
        Xception,
        _xception_module,
        _XCEPTION_HEADS,
        299,
        prefix='model.',
        # classification/dataset/transform.py (Resize, Normalize); classification/detect_from_video.py (RGB; the box:
        # get_boundingbox); classification/README.md (trained on face-tracker crops enlarged by 1.3).
        preprocessing={
            'input_size': 299,
            'resize': 'PIL bilinear',
            'faces': 'square face box enlarged 1.3x (dlib detector at test time)',
            **_XCEPTION_IO,
        },
    ),
    'deepfakebench_xception': Arch(
        Xception,
        _xception_module,
        _XCEPTION_HEADS,
        256,
        prefix='backbone.',
        left_out={'backbone.adjust_channel.*': "Xception's adjust_channel head, run only in its adjust_channel mode"},
        preprocessing=_DEEPFAKEBENCH_INPUT,
    ),
    'deepfakebench_recce': Arch(
        Recce,
        _recce_module,
        ('fc.weight',),
        256,
        prefix='model.',
        left_out={
            'backbone.*': "RecceDetector's backbone, built but never run (its 'do not use the self.backbone in recce')",
            'model.encoder.fc.*': "timm Xception's ImageNet classifier; Recce classifies with its own fc",
        },
        preprocessing=_DEEPFAKEBENCH_INPUT,
    ),
}
ARCHS = {
    'legacy_xception': Arch(Xception, _xception_module, _XCEPTION_HEADS, 299),
    'resnet50': Arch(resnet50, _resnet_module, ('fc.weight',), 224),
    'vit_base_patch16_224': Arch(VisionTransformer, _vit_module, ('head.weight',), 224),
    **DETECTORS,
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
    """Reads a PyTorch checkpoint as {name: float32 array}; unwraps `state_dict`/`model` and (Distributed)DataParallel's
    `module.`."""
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
    if obj and all(k.startswith('module.') for k in obj):
        obj = {k.removeprefix('module.'): v for k, v in obj.items()}
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
    arch_name: str,
    state_dict: dict[str, np.ndarray],
    *,
    skip: Sequence[str] = (),
    source: str = 'state dict',
    **model_kwargs,
) -> tuple[nn.Module, dict]:
    """Converts a state dict into `(module, variables)`.

    `skip` holds glob patterns of torch keys to leave out on purpose (e.g. `blocks.1[01].*` for a shallower ViT), on
    top of the arch's `left_out`. Raises ValueError naming `source` and listing every unused torch key (including any
    outside a detector's `prefix`), missing flax variable and shape mismatch.
    """
    if arch_name not in ARCHS:
        raise ValueError(f'unknown arch {arch_name!r}; choose from {", ".join(ARCHS)}')
    arch = ARCHS[arch_name]
    if 'num_classes' not in model_kwargs:
        head = next((state_dict[arch.prefix + k] for k in arch.head_key if arch.prefix + k in state_dict), None)
        model_kwargs['num_classes'] = 0 if head is None else head.shape[0]
    module = arch.build(**model_kwargs)
    size = arch.input_size
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    targets = traverse_util.flatten_dict(abstract)

    patterns = (*arch.left_out, *skip)
    flat, unused, mismatched, seen = {}, [], [], set()
    for name, value in state_dict.items():
        if name.rpartition('.')[2] in _IGNORED or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if not name.startswith(arch.prefix):
            unused.append(f'{name} (not under {arch.prefix!r})')
            continue
        path, value = _to_flax(name.removeprefix(arch.prefix), value, arch, targets)
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
        hint = '' if flat else f' (no tensor fits it: another layout? --arch is one of {", ".join(ARCHS)})'
        raise ValueError(f'{source}: cannot convert to {arch_name}{hint}:\n' + '\n'.join(problems))
    return module, traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def load_torch(arch_name: str, path: str | Path, *, skip: Sequence[str] = (), **model_kwargs) -> tuple[nn.Module, dict]:
    """Reads a PyTorch checkpoint and converts it: `module.apply(variables, x_nhwc, train=False)` matches torch."""
    return convert_state_dict(arch_name, read_state_dict(path), skip=skip, source=str(path), **model_kwargs)


def main(argv: Sequence[str]) -> int:
    """`fdx convert-weights`: PyTorch state dict → orbax checkpoint of flax variables."""
    parser = argparse.ArgumentParser(prog='fdx convert-weights', description=main.__doc__)
    parser.add_argument(
        '--arch', required=True, choices=sorted(ARCHS), help=f'a backbone or a detector ({", ".join(DETECTORS)})'
    )
    parser.add_argument('--src', required=True, help='PyTorch checkpoint (.pth / .pt / .bin state dict)')
    parser.add_argument('--out', required=True, help='output directory (must not exist)')
    parser.add_argument('--num-classes', type=int, help='default: taken from the checkpoint\'s classifier')
    parser.add_argument('--skip', action='append', default=[], help='glob of torch keys to leave out (repeatable)')
    args = parser.parse_args(argv)
    kwargs = {} if args.num_classes is None else {'num_classes': args.num_classes}
    module, variables = load_torch(args.arch, args.src, skip=args.skip, **kwargs)
    arch = ARCHS[args.arch]
    pretrained.save_variables(
        args.out,
        variables,
        arch=args.arch,
        model_kwargs={'num_classes': module.num_classes},
        source=str(Path(args.src).absolute()),
        left_out={**arch.left_out, **{p: 'given with --skip' for p in args.skip}},
        preprocessing=arch.preprocessing,
    )
    print(
        f'wrote {args.out}: {args.arch}, {pretrained.count_params(variables):,} parameters, '
        f'num_classes={module.num_classes}'
    )
    for pattern, reason in arch.left_out.items():
        print(f'  left out {pattern}: {reason}')
    return 0


def load_converted(directory: str | Path) -> tuple[nn.Module, dict]:
    """`(module, variables)` from a directory written by `fdx convert-weights`."""
    variables, meta = pretrained.load_variables(directory)
    return ARCHS[meta['arch']].build(**meta['model_kwargs']), variables
