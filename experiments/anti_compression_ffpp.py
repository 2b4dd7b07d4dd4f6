"""Anti-compression metric learning (Cao et al.) on FaceForensics++: Table 2's loss ablation, Table 1's LQ comparison.

    fdx prepare ffpp --src RAW --out data --qualities c23,c40 --sampling all --max-frames 270
    fdx train --config experiments/anti_compression_ffpp.py[:ARG] --workdir runs/anti_compression
    fdx grid  experiments/anti_compression_ffpp.py:table=2,init=CKPT   # Table 2 on FF++ Deepfakes
    fdx eval  --workdir W --step best --save-maps 8                  # ACC/AUC, PBCA, the LQ attention maps

ARG is a comma-separated list of options:
    variant=NAME    full (default: L_cls + L_AT + L_dis + L_gan) | dis (no L_gan) | at (L_cls + L_AT) | cls (L_cls on
                    c40, the LQ branch alone) — Table 2's rows, bottom to top | xception (Table 1's baseline: the
                    `classifier` method's Xception on c40, same data and optimizer)
    manipulation=M  Deepfakes | Face2Face | FaceSwap | NeuralTextures: that one against the reals (Table 2: Deepfakes)
    init=PATH       a `fdx convert-weights` checkpoint of timm's legacy_xception (ImageNet): every head and tail
    code            the released code's choices where they differ from the paper (see `_code`)
    mini            CPU-sized, same code path (see `_mini`)
    table=T         what sweep() yields: 2 (default; the four rows on Deepfakes) or 1 (xception and full on all four
                    manipulations, LQ)

Paper defaults (Sec. 4): two ImageNet Xception branches for c23 (HQ) and c40 (LQ) crops enlarged 1.3x (`fdx prepare`'s
crop), 270 frames per video, reals upsampled to balance the fakes (`data.sampling = 'balanced'`), masks binarised at
0.1, λ = (0.001, 1, 0.1), r− = 5, r+ = 75, d = 2048, Adam lr 1e-4, batch 32; "stopped when the validation loss
doesn't reduce": fdx evaluates FF++'s val split every epoch and keeps the best checkpoint by val frame AUC (`select`,
`fdx eval --step best`) over `num_epochs` 20 (ours: the paper gives no length). Test: the LQ branch on c40 frames
(`masked_frame` view). Inputs 299x299 in [-1, 1]; no augmentation (none is stated). The method's own defaults where
the paper is silent are listed in `fdx.methods.anti_compression`.
"""

from typing import Any

import ml_collections

from fdx import train
from fdx.config import option_choice, parse_options, table_sweep
from fdx.input import data_config
from fdx.input.layouts import FFPP_DEFAULT_METHODS
from fdx.models.anti_compression import HEAD_LAYERS, TAIL_LAYERS, attention_size

OPTIONS = ('variant', 'manipulation', 'init', 'code', 'mini', 'table')
# Table 2's rows (top to bottom) and Table 1's baseline → (branches, λ weights of L_AT, L_dis, L_gan).
VARIANTS = {
    'cls': (('lq',), 0.0, 0.0, 0.0),
    'at': (('hq', 'lq'), 1.0, 0.0, 0.0),
    'dis': (('hq', 'lq'), 1.0, 0.1, 0.0),
    'full': (('hq', 'lq'), 1.0, 0.1, 0.001),
    'xception': (('lq',), 0.0, 0.0, 0.0),
}
TABLES = {
    '1': [{'variant': v} for v in ('xception', 'full')],
    '2': [{'variant': v, 'manipulation': 'Deepfakes'} for v in ('cls', 'at', 'dis', 'full')],
}
# Layers of a 1000-class Xception checkpoint that a head or a tail does not have.
NOT_IN_HEAD = (*TAIL_LAYERS, 'bn3', 'bn4', 'head')
NOT_IN_TAIL = (*HEAD_LAYERS, 'bn1', 'bn2', 'head')


def _init(branches: tuple[str, ...], shared_tail: bool, checkpoint: str) -> tuple[dict[str, Any], ...]:
    """`config.init`: every branch's head (its attention layer fresh) and tail (its classifiers fresh) from one
    converted ImageNet Xception."""
    heads = [{'checkpoint': checkpoint, 'dst': b, 'fresh': ('attention',), 'ignore': NOT_IN_HEAD} for b in branches]
    tails = ['tail'] if shared_tail else [f'tail_{b}' for b in branches]
    return tuple(
        heads + [{'checkpoint': checkpoint, 'dst': t, 'fresh': ('fc*',), 'ignore': NOT_IN_TAIL} for t in tails]
    )


def _code(c: ml_collections.ConfigDict) -> None:
    """The released code (reference notes): one shared tail and no classifier, the decision ‖C_l‖ > 9, no critic
    training (its critic is defined but never trained; its first convolution is 3x3), metric radii 0.01 / 18 at
    weight 1 with 0.2 · ‖C_h − C_l‖2, attention transfer as the L2 distance of normalised maps, a binary
    cross-entropy of both maps against the mask binarised at 0.2."""
    c.model.shared_tail = True
    c.model.classifier = False
    c.model.critic.first_kernel = 3
    c.loss.cls_weight = 0.0
    c.loss.gan_weight = 0.0
    c.loss.metric_weight = 1.0
    c.loss.radius_real = 0.01
    c.loss.radius_fake = 18.0
    c.loss.pair_weight = 0.2
    c.loss.transfer = 'normalised_l2'
    c.loss.mask_loss = 'bce'
    c.loss.mask_branches = ('hq', 'lq')
    c.predict.score = 'norm'
    for view in ('pair', 'masked_frame'):
        c.data[view].mask_threshold = 0.2


def _mini(c: ml_collections.ConfigDict) -> None:
    """CPU-sized, same code path: Xception at 1/4 width (V: 184 channels) on 96x96 crops (6x6 attention maps and
    masks), a critic of width 256, batch 16, 300 steps of Adam at 1e-3 halved every 100 (the paper's 1e-4 is for
    ImageNet-initialised full-size models; the critic keeps its own rate, 1e-4), val frame AUC every 100 steps.
    Prepare with `--crop-size 128`."""
    c.model.backbone_kwargs = {'width': 0.25}
    c.model.critic.width = 256
    for view in ('pair', 'masked_frame'):
        c.data[view].size = 96
        c.data[view].mask_sizes = (attention_size(96),)
    c.batch_size = 16
    c.total_steps = 300
    c.log_every = 25
    c.checkpoint.every = 300
    c.eval_every = 100
    c.eval_every_epochs = 0.0
    c.optim.lr = 1e-3
    c.optim.schedule = 'step'
    c.optim.factor = 0.5
    c.optim.every_steps = 100
    c.data.workers = 0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    where = 'anti_compression_ffpp'
    options = parse_options(arg, OPTIONS, where)
    variant = option_choice(options, 'variant', tuple(VARIANTS), 'full', where)
    option_choice(options, 'table', tuple(TABLES), '2', where)
    manipulation = options.get('manipulation')
    if manipulation is not None:
        option_choice(options, 'manipulation', FFPP_DEFAULT_METHODS, '', where)
    branches, transfer_weight, metric_weight, gan_weight = VARIANTS[variant]

    c = train.base_config()
    c.method = 'classifier' if variant == 'xception' else 'anti_compression'
    c.batch_size = 32
    c.num_epochs = 20
    c.log_every = 100
    c.eval_splits = ('val', 'test')
    c.eval_every_epochs = 1
    c.select.update({'split': 'val', 'metric': 'frame/auc', 'mode': 'max'})
    c.optim.name = 'adam'
    c.optim.lr = 1e-4
    # WGAN-GP's critic optimizer (Gulrajani et al., Algorithm 1); the paper does not give one
    c.critic_optim.name = 'adam'
    c.critic_optim.lr = 1e-4
    c.critic_optim.beta1 = 0.0
    c.critic_optim.beta2 = 0.9
    c.model = ml_collections.ConfigDict(
        {
            'branches': branches,
            'shared_tail': False,  # the code: True
            'classifier': True,  # FC_H, FC_L; the code: False
            'critic': {'width': 2048, 'first_kernel': 1, 'steps': 5},  # the code's first kernel: 3
            'backbone': 'xception',  # the xception variant (`classifier` method)
            'backbone_kwargs': {},  # {'width': w}: reduced models
            'dropout_rate': 0.0,  # the xception variant
            'remat': False,  # the xception variant
            'dtype': 'float32',
        }
    )
    c.loss = ml_collections.ConfigDict(
        {
            'cls_weight': 1.0,
            'gan_weight': gan_weight,  # λ1
            'transfer_weight': transfer_weight,  # λ2
            'metric_weight': metric_weight,  # λ3
            'radius_real': 5.0,  # r−
            'radius_fake': 75.0,  # r+
            'pair_weight': 1.0,  # ‖C_h − C_l‖2 in eq. 6; the code: 0.2
            'transfer': 'l1',  # eq. 5 | normalised_l2 (the code)
            'transfer_stop_gradient': True,  # M_H is the teacher of the transfer term
            'mask_loss': 'l1',  # eq. 5 | bce (the code)
            'mask_branches': ('hq',),  # maps supervised by M_gt; the code: both
            'gp_weight': 10.0,
            'reduction': 'mean',  # over the batch | sum (eq. 6's Σ)
            'map_reduction': 'mean',  # ‖·‖1 of a map: mean over its cells | sum
        }
    )
    c.predict = ml_collections.ConfigDict({'score': 'softmax', 'decision_radius': 9.0})  # the code: norm
    size = 299
    c.data = data_config(
        name='ffpp',
        train_view='pair' if len(branches) == 2 else 'masked_frame',
        eval_view='masked_frame',
        target='label',
        sampling='balanced',
        classes=('real', manipulation) if manipulation else (),
        pair=dict(hq='c23', lq='c40', size=size, mask_sizes=(attention_size(size),), mask_threshold=0.1),
        masked_frame=dict(quality='c40', size=size, mask_sizes=(attention_size(size),), mask_threshold=0.1),
    )
    if options.get('code'):
        _code(c)
    if options.get('init'):  # after `code`: its shared tail has other names
        if variant == 'xception':
            c.init = ({'checkpoint': options['init'], 'fresh': ('head',)},)
        else:
            c.init = _init(branches, c.model.shared_tail, options['init'])
    if options.get('mini'):
        _mini(c)
    return c


def sweep(arg: str | None = None):
    """The points of `table=T` (default 2) with the rest of ARG applied to each (`fdx.config.table_sweep`)."""
    return table_sweep(get_config, arg, OPTIONS, TABLES, '2', 'anti_compression_ffpp')
