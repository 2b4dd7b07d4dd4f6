"""A tiny classifier on synthetic arrays: the trainer's test config (same code path as the paper configs)."""

import ml_collections

from fdx import train
from fdx.input import data_config


def get_config(arg=None):
    c = train.base_config()
    c.method = 'classifier'
    c.seed = 0
    c.batch_size = 8
    c.total_steps = 12
    c.log_every = 1
    c.checkpoint.every = 3
    c.checkpoint.keep = 2
    c.optim.name = 'sgd'
    c.optim.lr = 0.05
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.model = ml_collections.ConfigDict(
        {
            'backbone': 'resnet',
            'backbone_kwargs': {'stage_sizes': (1, 1), 'width': 4},
            'dtype': 'float32',
            'remat': False,
            'dropout_rate': 0.0,
        }
    )
    class_names = ('FS', 'LW', 'IAE') if arg == 'multiclass' else ('real', 'fake')
    c.data = data_config(
        name='synthetic',
        class_names=class_names,
        image_size=32,
        frames=0,
        records={'train': 64, 'val': 24, 'test': 40},
        frames_per_video=4,
        train_view='synthetic',
        synthetic={'flip': 0.5},
    )
    return c


def sweep(arg=None):
    if arg == 'slurm':  # tests/test_slurm.py: the reference run, another learning rate, a point that fails
        yield from ({'optim.lr': 0.05}, {'optim.lr': 0.01}, {'optim.name': 'no_such_optimizer'})
        return
    for lr in (0.05, 0.01):
        yield {'optim.lr': lr, 'total_steps': 4}
