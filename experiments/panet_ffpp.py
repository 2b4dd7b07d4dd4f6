"""PANet on FaceForensics++ (Guo et al.): Table I's rows this codebase has (Xception, RECCE, PANet) at HQ and LQ.

    fdx train --config experiments/panet_ffpp.py[:ARG] --workdir runs/panet
    fdx grid  experiments/panet_ffpp.py:init=CKPT          # Table I: {Xception, RECCE, PANet} × {c23, c40}
    fdx eval  --workdir W --step best --save-maps 8        # ACC/AUC per frame and video + reconstructions

ARG is a comma-separated list of options:
    variant=NAME    panet (default) | recce | xception (the Table I rows)
    quality=Q       c23 (FF++ HQ, default) | c40 (LQ)
    init=PATH       a `fdx convert-weights` checkpoint of timm's legacy_xception (ImageNet), as the papers' encoder
    code            RECCE's official training settings where they differ from the paper (see `_code`)
    mini            CPU-sized, same code path: a 1/4-width Xception at 96x96, 300 steps (see `_mini`)

Paper defaults (Sec. IV-A): Adam lr 2e-4, weight decay 1e-5, batch 32, 40 epochs, a step learning-rate schedule,
random horizontal flips only, EMAM with 8 groups; inputs as in RECCE: 299x299 face crops normalised to [-1, 1].
Not stated in the paper, taken from RECCE's code: the step schedule halves the rate at each quarter of training
(StepLR γ 0.5 every 22,500 of 90,000 steps → every 10 of 40 epochs), λ1 = λ2 = 0.1, dropout 0.2 (decoder input,
graph reasoning, guided attention, head), all four FF++ manipulations against the reals (no class balancing), the
ImageNet Xception encoder. The attention sites are ours: EMAM on the encoder output, SCAM after the guided attention
(`model.ema_after`, `model.scam_after`). The Xception row is the `classifier` method with the same optimiser and data.
Checkpoint selection (not stated in either paper): FF++'s val split is evaluated every epoch and the checkpoint of the
best frame AUC is kept (`select`; `fdx eval --step best`); the test split is only ever evaluated.
`model.scam_spatial_batch_norm` (default False, the CBAM paper) adds the official CBAM code's BN after SCAM's 7x7
spatial convolution; neither `code` (RECCE has no CBAM) nor PANet (no public code) sets it.
"""

from typing import Any

import ml_collections

from fdx import train
from fdx.config import option_choice, parse_options
from fdx.input import data_config

OPTIONS = ('variant', 'quality', 'init', 'code', 'mini')
QUALITIES = ('c23', 'c40')

# Table I rows → dotted overrides.
VARIANTS = {
    'panet': {'method': 'panet', 'model.ema_after': 'block4', 'model.scam_after': 'guided_attention'},
    'recce': {'method': 'panet', 'model.ema_after': '', 'model.scam_after': ''},
    'xception': {'method': 'classifier'},
}
# Model parts an ImageNet Xception checkpoint does not have.
FRESH = ('head', 'decoder*', 'graph_reasoning', 'guided_attention', 'ema', 'scam')


def _init(variant: str, checkpoint: str) -> tuple[dict[str, Any], ...]:
    """`config.init` from a converted ImageNet Xception: the trunk keeps timm's names in every variant."""
    return ({'checkpoint': checkpoint, 'fresh': ('head',) if variant == 'xception' else FRESH},)


def _code(c: ml_collections.ConfigDict) -> None:
    """RECCE's official settings (reference notes): 90k steps, StepLR γ 0.5 every 22,500 steps, BCE flooding at 0.04,
    the hinge metric loss on three scales, white noise (std 1e-6) on a random half of each batch."""
    c.total_steps = 90_000
    c.optim.every_epochs = 0.0
    c.optim.every_steps = 22_500
    c.loss.flooding = 0.04
    c.loss.metric_features = ('block4', 'decoder2', 'decoder4')
    c.loss.metric_form = 'hinge'
    c.model.noise_std = 1e-6


def _mini(c: ml_collections.ConfigDict) -> None:
    """CPU-sized, same code path: Xception at 1/4 width (728 → 184 channels, still 8 EMAM groups), 96x96 inputs,
    batch 16, 300 steps with the rate halved every 100, Adam at 1e-3 (the paper's 2e-4 is for ImageNet-initialised
    full-size models); balanced real/fake sampling so that the few real videos are not outnumbered."""
    c.model.backbone_kwargs = {'width': 0.25}
    c.batch_size = 16
    c.total_steps = 300
    c.log_every = 25
    c.checkpoint.every = 300
    c.optim.lr = 1e-3
    c.optim.every_epochs = 0.0
    c.optim.every_steps = 100
    c.eval_every = 100
    c.data.frame.size = 96
    c.data.sampling = 'balanced'
    c.data.workers = 0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_options(arg, OPTIONS, 'panet_ffpp')
    variant = option_choice(options, 'variant', tuple(VARIANTS), 'panet', 'panet_ffpp')
    quality = option_choice(options, 'quality', QUALITIES, 'c23', 'panet_ffpp')

    c = train.base_config()
    c.batch_size = 32
    c.num_epochs = 40
    c.log_every = 100
    c.eval_splits = ('val', 'test')
    c.eval_every_epochs = 1
    c.select.update({'split': 'val', 'metric': 'frame/auc', 'mode': 'max'})
    c.optim.name = 'adam'
    c.optim.lr = 2e-4
    c.optim.weight_decay = 1e-5
    c.optim.schedule = 'step'
    c.optim.factor = 0.5
    c.optim.every_epochs = 10
    c.model = ml_collections.ConfigDict(
        {
            'backbone': 'xception',
            'backbone_kwargs': {},  # {'width': w}: reduced models
            'dropout_rate': 0.2,
            'noise_std': 0.0,  # RECCE's code: 1e-6
            'noise_fraction': 0.5,
            'ema_after': 'block4',
            'scam_after': 'guided_attention',
            'ema_groups': 8,
            'scam_reduction': 16,
            'scam_spatial_batch_norm': False,  # the CBAM code: True
            'dtype': 'float32',
            'remat': False,  # classifier variant
        }
    )
    c.loss = ml_collections.ConfigDict(
        {
            'reconstruction_weight': 0.1,  # λ1
            'metric_weight': 0.1,  # λ2
            'metric_features': ('block4',),
            'metric_form': 'difference',  # eq. 10 | hinge (RECCE's code)
            'flooding': 0.0,  # RECCE's code: 0.04
        }
    )
    c.data = data_config(
        name='ffpp',
        train_view='frame',
        target='label',
        frame=dict(quality=quality, size=299, normalisation='xception', flip=0.5),
    )
    c.update_from_flattened_dict(VARIANTS[variant])
    if options.get('init'):
        c.init = _init(variant, options['init'])
    if options.get('code'):
        _code(c)
    if options.get('mini'):
        _mini(c)
    return c


def sweep(arg: str | None = None):
    """Table I: the three rows at HQ (c23) and LQ (c40)."""
    options = parse_options(arg, OPTIONS, 'panet_ffpp')
    for quality in QUALITIES:
        for variant, overrides in VARIANTS.items():
            point = {**overrides, 'data.frame.quality': quality}
            if options.get('init'):
                point['init'] = _init(variant, options['init'])
            yield point
