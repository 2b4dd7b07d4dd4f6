"""AUNet (Bai et al., CVPR 2023) on FaceForensics++: reals-only training with tampered-AU prediction (Tables 2-5) and
in-dataset training without it (Table 1).

    fdx prepare ffpp --src RAW --out data --qualities c23 --frames 32        # 32 test frames per video (Sec. 4.1)
    fdx train --config experiments/aunet_ffpp.py[:ARG] --workdir runs/aunet
    fdx grid  experiments/aunet_ffpp.py:table=4,init=CKPT                   # Table 4's ablations
    fdx eval  --workdir W --step best --save-maps 8                         # AUC per manipulation (Table 2), Fig. 5
    fdx crosseval --workdir W --key data.name --values celebdf,...          # Table 3 (other prepared datasets)

ARG is a comma-separated list of options:
    variant=NAME    full (default) | Table 4's rows: backbone (no ART), no_au_specific (w/o SPB), no_au_agnostic
                    (w/o AGB), face_mask (w/o M_p: the whole hull M_f), no_tampering (w/o IT), no_mixing (w/o FM),
                    no_token (w/o LS, λt = 0) | sbi (the backbone with self-blended images and L_cls alone: the
                    Xception+SBI baseline of Table 3 on AUNet's backbone) | in_dataset (Table 1: ART trained on
                    FF++'s real and fake frames, without TAP)
    token_weight=W  λt (Table 5: 0, 10, 30, 50, 100)
    quality=Q       c23 (HQ, default: "the HQ version by default") | raw | c40
    init=PATH       a `fdx convert-weights` checkpoint of timm's legacy_xception (ImageNet): the backbone
    mini            CPU-sized, same code path (see `_mini`)
    table=T         what sweep() yields: 4 (default; Table 4's eight rows) | 5 (λt) | 1 (in-dataset, one point)

Paper defaults (Sec. 3-4): Xception conv1 … block11 from ImageNet, 224x224 inputs in [-1, 1], K = 15 AU maps
(σ = 3), three ART encoders, λ = (1, 30, 0.5), Huber δ = 0.5, token threshold 0.5, SGD lr 1e-3 (momentum 0.9:
ours), batch 32 of 16 reals and their 16 self-blended fakes, 100 epochs, 8 frames per video for training (the
`self_blended` view's `frames_per_video`) and 32 for testing (`fdx prepare --frames 32`), the reals of FF++'s train
split only (`data.sampling = 'real_only'`). Not in the paper (fdx's, each an option): the checkpoint of the best
FF++ val frame AUC is kept (`fdx eval --step best`), AU regions and the number removed per fake
(`fdx.input.self_blended`), the model's widths (`fdx.models.aunet`), Beta(0.1, 0.1), the mixing layers and the
inference rule (`fdx.methods.aunet`).
"""

import ml_collections

import fdx.input.self_blended  # noqa: F401  (registers the `self_blended` view)
from fdx import train
from fdx.config import option_choice, parse_options, table_sweep
from fdx.input import data_config
from fdx.models.aunet import BACKBONE_LAYERS, NUM_AUS

OPTIONS = ('variant', 'token_weight', 'quality', 'init', 'mini', 'table')
VARIANTS = (
    'full',
    'backbone',
    'no_au_specific',
    'no_au_agnostic',
    'face_mask',
    'no_tampering',
    'no_mixing',
    'no_token',
    'sbi',
    'in_dataset',
)
QUALITIES = ('c23', 'raw', 'c40')
# `config.init` from a 1000-class ImageNet Xception: what AUNet adds, and the layers after block11.
FRESH = ('encoder*', 'head', 'token_head')
NOT_IN_BACKBONE = ('block12', 'conv3', 'conv4', 'bn3', 'bn4', 'head')
TABLES = {
    '4': [{'variant': v} for v in VARIANTS[:8]],
    '5': [{'token_weight': w} for w in ('0', '10', '30', '50', '100')],
    '1': [{'variant': 'in_dataset'}],
}


def _variant(c: ml_collections.ConfigDict, variant: str) -> None:
    """Table 4's ablations and the baselines, as changes to the full model's config."""
    if variant in ('backbone', 'sbi'):
        c.model.encoders = 0
        c.loss.att_weight = 0.0
    if variant == 'no_au_specific':
        c.model.au_specific = False
        c.loss.att_weight = 0.0
    if variant == 'no_au_agnostic':
        c.model.au_agnostic = False
    if variant == 'face_mask':
        c.data.self_blended.mask = 'face'
    if variant == 'no_tampering':
        c.data.self_blended.tampering = False
    if variant in ('no_mixing', 'sbi', 'in_dataset'):
        c.tap.feature_mixing = False
    if variant in ('no_token', 'sbi', 'in_dataset'):
        c.loss.token_weight = 0.0
    if variant == 'in_dataset':
        c.data.train_view = 'au'
        c.data.sampling = 'all'


def _mini(c: ml_collections.ConfigDict) -> None:
    """CPU-sized, same code path: Xception at 1/4 width (184 channels at block11) on 128x128 crops (an 8x8 token
    grid), one ART encoder instead of three (trained from scratch, a stack of three leaves the class head at chance
    for the first ≈ 1000 steps: README, AUNet), attention modules of width 64, tokens of 96 with 4 heads and an MLP
    of 384; batch 16 (8 reals and their fakes), 3000 steps of Adam at 1e-3 halved every 1050 (the paper's SGD at
    1e-3 is for 100 ImageNet-initialised epochs), val frame AUC every 500 steps. Prepare with `--crop-size 128`."""
    c.model.encoders = min(c.model.encoders, 1)
    c.model.backbone_kwargs = {'width': 0.25}
    c.model.specific.attention_width = 64
    c.model.agnostic.update({'token_dim': 96, 'num_heads': 4, 'mlp_dim': 384})
    for view in ('self_blended', 'au', 'frame'):
        c.data[view].size = 128
    c.batch_size = 16
    c.total_steps = 3000
    c.log_every = 50
    c.checkpoint.every = 3000
    c.eval_every = 500
    c.eval_every_epochs = 0.0
    c.optim.name = 'adam'
    c.optim.lr = 1e-3
    c.optim.schedule = 'step'
    c.optim.factor = 0.5
    c.optim.every_epochs = 0.0
    c.optim.every_steps = 1050
    c.data.workers = 0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    where = 'aunet_ffpp'
    options = parse_options(arg, OPTIONS, where)
    variant = option_choice(options, 'variant', VARIANTS, 'full', where)
    quality = option_choice(options, 'quality', QUALITIES, 'c23', where)
    option_choice(options, 'table', tuple(TABLES), '4', where)

    c = train.base_config()
    c.method = 'aunet'
    c.batch_size = 32
    c.num_epochs = 100
    c.log_every = 100
    c.eval_splits = ('val', 'test')
    c.eval_every_epochs = 1
    c.select.update({'split': 'val', 'metric': 'frame/auc', 'mode': 'max'})
    c.optim.name = 'sgd'
    c.optim.lr = 1e-3
    c.optim.momentum = 0.9
    c.model = ml_collections.ConfigDict(
        {
            'encoders': 3,
            'au_specific': True,
            'au_agnostic': True,
            'specific': {'num_aus': NUM_AUS, 'attention_width': 256},
            'agnostic': {
                'token_dim': 384,
                'num_heads': 6,
                'mlp_dim': 1536,
                'position_embedding': True,
                'dropout_rate': 0.0,
            },
            'backbone_kwargs': {},  # {'width': w}: reduced models
            'dtype': 'float32',
        }
    )
    c.loss = ml_collections.ConfigDict(
        {
            'cls_weight': 1.0,  # λc
            'token_weight': float(options.get('token_weight', 30.0)),  # λt
            'att_weight': 0.5,  # λa
            'huber_delta': 0.5,  # δ of eq. 1
            'att_encoders': 'all',  # | last
        }
    )
    c.tap = ml_collections.ConfigDict({'feature_mixing': True, 'mixing_alpha': 0.1, 'mixing_layers': BACKBONE_LAYERS})
    c.predict = ml_collections.ConfigDict({'combine': 'class_and_max_token'})
    c.data = data_config(
        name='ffpp',
        train_view='self_blended',
        eval_view='frame',
        target='label',
        sampling='real_only',
        self_blended=dict(quality=quality, size=224, flip=0.5, frames_per_video=8),
        au=dict(quality=quality, size=224, flip=0.5),
        frame=dict(quality=quality, size=224),
    )
    _variant(c, variant)
    if options.get('init'):
        c.init = ({'checkpoint': options['init'], 'fresh': FRESH, 'ignore': NOT_IN_BACKBONE},)
    if options.get('mini'):
        _mini(c)
    return c


def sweep(arg: str | None = None):
    """The points of `table=T` (default 4) with the rest of ARG applied to each (`fdx.config.table_sweep`)."""
    return table_sweep(get_config, arg, OPTIONS, TABLES, '4', where='aunet_ffpp')
