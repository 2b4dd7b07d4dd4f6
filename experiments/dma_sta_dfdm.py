"""DMA-STA on DFDM (Jia et al., ICIP 2022): Table 3's attention schemes, Table 4's Xception, Table 5's qualities.

    fdx train --config experiments/dma_sta_dfdm.py[:ARG] --workdir runs/dma_sta
    fdx grid  experiments/dma_sta_dfdm.py:init=CKPT            # Table 3 rows
    fdx grid  experiments/dma_sta_dfdm.py:table5,init=CKPT     # Table 5: train on crf0 / crf10 / crf23
    fdx eval  --workdir W --config.data.clip.quality=crf23     # Table 5: test on another quality

ARG is a comma-separated list of options:
    variant=NAME    dma_sta (default) | sam_ave | sam_fa | cbam | resnet_score_fusion (Table 3 rows) |
                    xception_score_fusion (Table 4)
    quality=Q       training quality crf0 (NoL) | crf10 (HQ, default: Tables 3 and 4) | crf23 (LQ)
    init=PATH       a `fdx convert-weights` checkpoint of the variant's ImageNet backbone (resnet50, or
                    legacy_xception for xception_score_fusion), as the paper's ImageNet-pretrained ResNet-50
    code            the official code's settings where they differ from the paper (see `_code`)
    select_on_test  the official code's protocol: keep the checkpoint of the best test accuracy (every output then
                    says "selected on test"); by default the best checkpoint is chosen on `val` (see below)
    mini            CPU-sized: reduced ResNet, 4 frames of 96x96, 300 steps (same code path)
    table5          sweep() yields the three training qualities instead of the Table 3 rows

Defaults are the paper's (Sec. 4.1): ResNet-50, 10 periodically sampled frames of 224x224, SGD momentum 0.9, weight
decay 5e-4, lr 0.01 divided by 10 every 40 epochs down to 1e-4, batch 10, 300 epochs. Not stated in the paper, taken
from the official code: ImageNet initialisation of the trunk and horizontal flips; ImageNet mean/std normalisation
(the code uses its own DFDM statistics, see `code`). The paper and code report test accuracy; DFDM has no
validation split. Score fusion (resnet_score_fusion, xception_score_fusion) averages the frame logits (the
`classifier` method); the Xception baseline keeps FaceForensics++'s 299x299 inputs in [-1, 1] and DMA-STA's optimizer.

Checkpoint selection: DFDM is released without a validation split and the official code keeps the epoch of the best
*test* accuracy. fdx holds out 10% of each class's training videos as `val` (`data.val_from_train = 0.1`, seeded by
`data.seed`), evaluates it every 10 epochs and keeps the best clip accuracy (`select`, `fdx eval --step best`); the
test split is never read for selection unless `select_on_test` asks for the official protocol.

Model options of the `dma_sta` method (the score-fusion rows ignore them; `code` switches all three on):
    model.frame_batch_norm         'clip' (default: one BN batch of B·T frames, one running-statistics update per
                                   step) | 'per_frame' (the code's frame loop: BN over the B clips per frame index,
                                   T updates per step); evaluation is the same either way
    model.conv_init                'lecun_normal' (default, fdx's: truncated normal of variance 1 / fan_in) |
                                   'he_normal_fan_out' (the code: N(0, 2 / fan_out) for every convolution, SAM's
                                   included); with `init` it only affects what the checkpoint does not cover
    model.cbam_spatial_batch_norm  False (default: the CBAM paper) | True (the CBAM code's BN after the spatial
                                   gate's 7x7 convolution); the cbam variant only, DMA-STA's SAM has none. The
                                   DMA-STA release has no CBAM: `code` assumes Table 3's row ran the CBAM code's
                                   module
"""

from typing import Any

import ml_collections

from fdx import train
from fdx.config import option_choice, parse_options
from fdx.input import data_config
from fdx.input.layouts import DFDM_QUALITIES, MODELS

OPTIONS = ('variant', 'quality', 'init', 'code', 'select_on_test', 'mini', 'table5')

# Table 3 rows: (method, backbone attention, frame fusion). CBAM and the ResNet-50 baseline fuse by averaging, which
# with a linear head is the same as averaging frame logits (score fusion).
TABLE3 = {
    'resnet_score_fusion': ('classifier', 'none', 'average'),
    'cbam': ('dma_sta', 'cbam', 'average'),
    'sam_fa': ('dma_sta', 'spatial', 'frame_attention'),
    'sam_ave': ('dma_sta', 'spatial', 'average'),
    'dma_sta': ('dma_sta', 'spatial', 'temporal_attention'),
}
VARIANTS = (*TABLE3, 'xception_score_fusion')


def _init(method: str, checkpoint: str) -> tuple[dict[str, Any], ...]:
    """`config.init` from a converted ImageNet checkpoint; its 1000-class `head` never initialises ours."""
    if method == 'dma_sta':  # the trunk goes into `backbone`; attention modules, fusion and head start fresh
        return ({'checkpoint': checkpoint, 'dst': 'backbone', 'fresh': ('*/attention',), 'ignore': ('head',)},)
    return ({'checkpoint': checkpoint, 'fresh': ('head',)},)


def _table3(variant: str, init: str | None) -> dict[str, Any]:
    """Dotted overrides turning any ResNet-50 config of this file into the Table 3 row `variant`."""
    method, attention, fusion = TABLE3[variant]
    overrides = {'model.backbone_attention': attention, 'model.frame_fusion': fusion, 'method': method}
    if init:
        overrides['init'] = _init(method, init)
    return overrides


def _code(c: ml_collections.ConfigDict) -> None:
    """The official code's settings (reference notes): batch 20, 10 consecutive frames from a random start (train and
    test), each frame flipped independently, Resize 256 → CenterCrop 224, its DFDM statistics, 299 epochs
    (`range(1, 300)`). Its optimizer is rebuilt every epoch at
    max(lr / 10, 1e-4) with lr 0.01 ÷10 at epochs 40, 80, 120 (1-based): 1e-3 for 39 epochs, then 1e-4. The
    momentum reset of each rebuild is not reproduced. Model: the backbone runs frame by frame (per-frame-index batch
    norm), He-normal fan-out convolutions, and the cbam variant takes the official CBAM code's spatial-gate BN."""
    c.model.frame_batch_norm = 'per_frame'
    c.model.conv_init = 'he_normal_fan_out'
    c.model.cbam_spatial_batch_norm = True
    c.batch_size = 20
    c.num_epochs = 299
    c.optim.lr = 1e-3
    c.optim.every_epochs = 39
    c.data.clip.mode = 'consecutive'
    c.data.clip.random_start = True
    c.data.clip.test_random_start = True  # its test clips start at a random frame too
    c.data.clip.flip_per_frame = True  # torchvision flips each frame independently
    c.data.clip.resize_then_center_crop = True
    c.data.clip.normalisation = 'dma_sta_code'


def _mini(c: ml_collections.ConfigDict) -> None:
    """CPU-sized, same code path: a one-block-per-stage ResNet of width 16, 4 frames of 96x96 (at 64x64 the CRF 0/10/23
    crops differed too little for the test quality to matter), 300 steps, the rate ÷10 after 200."""
    if c.model.backbone == 'resnet':
        c.model.backbone_kwargs = {'stage_sizes': (1, 1, 1, 1), 'width': 16}
    c.batch_size = 8
    c.total_steps = 300
    c.log_every = 10
    c.checkpoint.every = 300
    c.optim.lr = 0.01
    c.optim.every_epochs = 0.0
    c.optim.every_steps = 200
    c.eval_every = 50
    c.data.clip.size = 96
    c.data.clip.frames = 4
    c.data.workers = 0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_options(arg, OPTIONS, 'dma_sta_dfdm')
    variant = option_choice(options, 'variant', tuple(VARIANTS), 'dma_sta', 'dma_sta_dfdm')
    quality = option_choice(options, 'quality', DFDM_QUALITIES, 'crf10', 'dma_sta_dfdm')

    c = train.base_config()
    c.method = 'dma_sta'
    c.batch_size = 10
    c.num_epochs = 300
    c.log_every = 50
    c.eval_splits = ('test',)  # DFDM: a 70/30 train/test split
    c.eval_every_epochs = 10
    c.select.update({'split': 'val', 'metric': 'frame/acc', 'mode': 'max'})  # a clip per video: frame = clip
    c.optim.name = 'sgd'
    c.optim.lr = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = 'step'
    c.optim.every_epochs = 40
    c.optim.factor = 0.1
    c.optim.min_lr = 1e-4
    c.model = ml_collections.ConfigDict(
        {
            'backbone': 'resnet',
            'backbone_kwargs': {'stage_sizes': (3, 4, 6, 3), 'width': 64},
            'backbone_attention': 'spatial',  # spatial (SAM) | cbam | none
            'frame_fusion': 'temporal_attention',  # temporal_attention | average | frame_attention
            'frame_batch_norm': 'clip',  # clip | per_frame (the code)
            'conv_init': 'lecun_normal',  # lecun_normal | he_normal_fan_out (the code)
            'cbam_spatial_batch_norm': False,  # the CBAM code: True
            'dtype': 'float32',
            'remat': False,
            'dropout_rate': 0.0,  # classifier variants
        }
    )
    c.data = data_config(
        name='dfdm',
        train_view='clip',
        target='class_id',
        class_names=MODELS,  # the paper's column order FS, LW, IAE, Dfaker, DFL
        val_from_train=0.1,
        clip=dict(quality=quality, size=224, normalisation='imagenet', flip=0.5, frames=10, mode='periodic'),
    )
    if variant == 'xception_score_fusion':
        c.method = 'classifier'
        c.model.backbone = 'xception'
        c.model.backbone_kwargs = {}
        c.data.clip.size = 299
        c.data.clip.normalisation = 'xception'
        if options.get('init'):
            c.init = _init('classifier', options['init'])
    else:
        c.update_from_flattened_dict(_table3(variant, options.get('init')))
    if options.get('code'):
        _code(c)
    if options.get('select_on_test'):
        c.select.update({'split': 'test', 'allow_test': True})
        c.data.val_from_train = 0.0
    if options.get('mini'):
        _mini(c)
    return c


def sweep(arg: str | None = None):
    """Table 3's five attention schemes, or with `table5` the three training qualities of the chosen variant."""
    options = parse_options(arg, OPTIONS, 'dma_sta_dfdm')
    if options.get('table5'):
        for quality in DFDM_QUALITIES:
            yield {'data.clip.quality': quality}
        return
    for variant in TABLE3:
        yield _table3(variant, options.get('init'))
