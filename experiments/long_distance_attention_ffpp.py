"""Spatial-temporal long-distance attention (Lu et al., TNNLS 2023) on FaceForensics++ and Celeb-DF.

    fdx prepare ffpp --src RAW --out data --sampling runs --frames 8 --run-length 4 --crop-size 448
    fdx train --config experiments/long_distance_attention_ffpp.py[:ARG] --workdir runs/lda
    fdx grid  experiments/long_distance_attention_ffpp.py:table=I,init=VIT   # Table I: {Xception, ours} × {c23, c40}
    fdx eval  --workdir W --step best --save-maps 8                         # ACC/AUC per frame and video + maps
    fdx summary experiments/long_distance_attention_ffpp.py:variant=spatial  # Table VII: parameters and GFLOPs

ARG is a comma-separated list of options:
    variant=NAME    spatial_temporal (default) | spatial | temporal | xception (Table VIII)
    quality=Q       c23 (HQ, default) | c40 (LQ) | both (c23 and c40 together, Table VI)
    dataset=D       ffpp (default) | celebdf (Table II; 10% of each class's train videos held out as val)
    manipulation=M  Deepfakes | Face2Face | FaceSwap | NeuralTextures: that one against the reals (Tables III-IV)
    maps=M          attention maps m (1..5, default 4; Table IX)
    frames=N        motion residuals n (2..5, default 3; Table X)
    size=S          backbone input 256 | 299 | 398 (default) | 448 (Table XI, on Celeb-DF; the attention input stays
                    224, its maps reach other feature sizes by adaptive average pooling as in Sec. VI-D)
    init=PATH       a `fdx convert-weights --arch vit_base_patch16_224` checkpoint: the attention components'
                    patch embedding and position embedding (Sec. V-A); everything else starts fresh
    mini            CPU-sized, same code path (see `_mini`)
    table=T         what sweep() yields: I, II, III, IV, VI, VIII, IX, X or XI (see `TABLES`)

Paper defaults (Sec. V-A): SGD momentum 0.9, lr 3e-4 halved every 5 epochs, 20 epochs, batch 32; the backbone
from scratch, the attention part from ImageNet ViT-B/16; dlib face crops resized to 398 (backbone) and 224
(attention), 16x16 patches, m = 4, n = 3; one logit per frame, cross-entropy. Not stated in the paper (fdx's):
random horizontal flips (one draw for a frame and its residuals), the checkpoint of the best val frame AUC is kept
(`fdx eval --step best`; FF++'s val split, Celeb-DF's held out from train), the attention choices of
`fdx.models.long_distance_attention` (U_h 768 → 5, scaled dot product, softmax over patches rescaled to mean 1,
sites conv2 / block3, adaptive-pool projection, channel groups per map). Crops must be prepared at ≥ the backbone
size (the residual view refuses smaller ones) and as runs of ≥ n + 1 consecutive frames.
"""

from typing import Any

import ml_collections

from fdx import train
from fdx.config import option_choice, parse_options, table_sweep
from fdx.input import data_config
from fdx.input.layouts import FFPP_DEFAULT_METHODS
from fdx.methods.long_distance_attention import VARIANTS

OPTIONS = ('variant', 'quality', 'dataset', 'manipulation', 'maps', 'frames', 'size', 'init', 'mini', 'table')
QUALITIES = ('c23', 'c40', 'both')
DATASETS = ('ffpp', 'celebdf')
SIZES = ('256', '299', '398', '448')
BASELINE = ('xception', 'spatial_temporal')
# sweep(table=T) → the grid's points as option dicts (the rest of ARG applies to every point).
TABLES = {
    'I': [{'variant': v, 'quality': q} for q in ('c23', 'c40') for v in BASELINE],
    'II': [{'variant': v, 'dataset': 'celebdf'} for v in BASELINE],
    'III': [{'variant': v, 'manipulation': m} for m in FFPP_DEFAULT_METHODS for v in BASELINE],  # frame level
    'IV': [{'variant': v, 'manipulation': m, 'quality': 'c40'} for m in FFPP_DEFAULT_METHODS for v in BASELINE],
    'VI': [{'variant': v, 'quality': 'both'} for v in BASELINE],  # then `fdx eval --config.data.name=celebdf`
    'VIII': [{'variant': v} for v in VARIANTS],
    'IX': [{'maps': str(m)} for m in range(1, 6)],
    'X': [{'frames': str(n)} for n in range(2, 6)],
    'XI': [{'variant': v, 'size': s, 'dataset': 'celebdf'} for s in SIZES for v in BASELINE],  # on Celeb-DF
}
# Variables of an attention component that a ViT checkpoint does not hold, and ViT variables it does not use.
FRESH = ('residual_embed*', 'time_embed', 'transform*', 'template', 'combine')
UNUSED = ('cls_token', 'block*', 'norm', 'head')


def _init(variant: str, checkpoint: str, stacked: bool = False) -> tuple[dict[str, Any], ...]:
    """`config.init`: each attention component's `patch_embed` and `pos_embed` from a converted ViT-B/16 (with
    stacked tokens the patch embedding takes 3(1 + n) channels and starts fresh)."""
    spatial, temporal = VARIANTS[variant]
    components = [name for name, on in (('spatial_attention', spatial), ('temporal_attention', temporal)) if on]
    return tuple(
        {
            'checkpoint': checkpoint,
            'dst': name,
            'fresh': FRESH + (('patch_embed',) if stacked and name == 'temporal_attention' else ()),
            'ignore': UNUSED + (('patch_embed',) if stacked and name == 'temporal_attention' else ()),
        }
        for name in components
    )


def _mini(c: ml_collections.ConfigDict) -> None:
    """CPU-sized, same code path: Xception at 1/4 width at 117x117 (conv2 56x56 = 7x the 8x8 patch grid, block3
    7x7, the 8 → 7 projection pooled as 14 → 25 at 398), attention on 64x64 in 8x8 patches, D = 192, U_h 192 → 5,
    12 modules; batch 16, 300 steps of Adam at 1e-3 halved every 100 (the paper's SGD at 3e-4 is for 20 full epochs),
    balanced real/fake sampling, val evaluated every 100 steps. Prepare with `--crop-size 128`."""
    c.model.backbone_kwargs = {'width': 0.25}
    c.model.attention.update({'patch_size': 8, 'embed_dim': 192, 'image_size': 64})
    c.data.residual.backbone_size = 117
    c.data.residual.attention_size = 64
    c.batch_size = 16
    c.total_steps = 300
    c.log_every = 25
    c.checkpoint.every = 300
    c.eval_every = 100
    c.eval_every_epochs = 0.0
    c.optim.name = 'adam'
    c.optim.lr = 1e-3
    c.optim.every_epochs = 0.0
    c.optim.every_steps = 100
    c.data.sampling = 'balanced'
    c.data.workers = 0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_options(arg, OPTIONS, 'long_distance_attention_ffpp')
    where = 'long_distance_attention_ffpp'
    variant = option_choice(options, 'variant', tuple(VARIANTS), 'spatial_temporal', where)
    quality = option_choice(options, 'quality', QUALITIES, 'c23', where)
    dataset = option_choice(options, 'dataset', DATASETS, 'ffpp', where)
    size = int(option_choice(options, 'size', SIZES, '398', where))
    maps = int(option_choice(options, 'maps', tuple('12345'), '4', where))
    frames = int(option_choice(options, 'frames', tuple('2345'), '3', where))
    option_choice(options, 'table', tuple(TABLES), 'I', where)
    manipulation = options.get('manipulation')
    if manipulation is not None:
        option_choice(options, 'manipulation', FFPP_DEFAULT_METHODS, '', where)
        if dataset != 'ffpp':
            raise ValueError(f'{where}: manipulation= needs dataset=ffpp')

    c = train.base_config()
    c.method = 'long_distance_attention'
    c.batch_size = 32
    c.num_epochs = 20
    c.log_every = 100
    c.eval_splits = ('val', 'test')
    c.eval_every_epochs = 1
    c.select.update({'split': 'val', 'metric': 'frame/auc', 'mode': 'max'})
    c.optim.name = 'sgd'
    c.optim.lr = 3e-4
    c.optim.momentum = 0.9
    c.optim.schedule = 'step'
    c.optim.factor = 0.5
    c.optim.every_epochs = 5
    c.model = ml_collections.ConfigDict(
        {
            'variant': variant,
            'spatial_site': 'conv2',  # 196x196 at 398 (Sec. IV-C: "the first several layers"); option block1
            'temporal_site': 'block3',  # 25x25 at 398 (Sec. IV-D: "mid-level"); option block7
            'resize': 'adaptive_pool',  # adaptive_pool | patch | bilinear
            'map_channels': 'groups',  # groups | mean
            'attention': {
                'patch_size': 16,
                'embed_dim': 768,
                'heads': 12,
                'head_dim': 5,  # U_h width (ours: reproduces Table VII's spatial parameter delta)
                'num_maps': maps,  # m
                'score': 'dot',  # dot | additive
                'normalise': 'softmax',  # softmax (mean 1) | sigmoid
                'tokens': 'sequence',  # sequence | stacked
                'image_size': 224,  # the stored position-embedding grid (ViT-B/16)
                'template_std': 0.0,  # t_h initialisation: 0 = zeros, uniform maps at the start (ours)
            },
            'backbone_kwargs': {},  # {'width': w}: reduced models
            'dropout_rate': 0.0,
            'dtype': 'float32',
        }
    )
    c.data = data_config(
        name=dataset,
        train_view='residual',
        target='label',
        val_from_train=0.1 if dataset == 'celebdf' else 0.0,
        classes=('real', manipulation) if manipulation else (),
        residual=dict(
            quality='c40' if quality == 'c40' else 'c23',
            mix_qualities=('c40',) if quality == 'both' else (),
            backbone_size=size,
            attention_size=224,
            normalisation='xception',
            flip=0.5,
            next_frames=frames,
        ),
    )
    if dataset == 'celebdf':
        if quality != 'c23':
            raise ValueError(f'{where}: quality= applies to FF++; Celeb-DF has one quality')
        c.data.residual.quality = 'raw'  # `fdx prepare celebdf` stores the videos as released under this name
    if options.get('init'):
        c.init = _init(variant, options['init'])
    if options.get('mini'):
        _mini(c)
    return c


def sweep(arg: str | None = None):
    """The points of `table=T` (default I) with the rest of ARG applied to each (`fdx.config.table_sweep`)."""
    return table_sweep(get_config, arg, OPTIONS, TABLES, 'I', 'long_distance_attention_ffpp')
