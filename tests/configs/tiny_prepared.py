"""The tiny classifier on a dataset prepared by `fdx prepare` (set config.data.dir); `arg` picks the data view."""

from fdx import train
from fdx.input import prepared_data_config
from fdx.input.layouts import MODELS


def get_config(arg='frame'):
    c = train.base_config()
    c.batch_size = 4
    c.total_steps = 3
    c.log_every = 1
    c.checkpoint.every = 3
    c.optim.lr = 0.01
    c.model.backbone = 'resnet'
    c.model.backbone_kwargs = {'stage_sizes': (1, 1), 'width': 4}
    c.model.dtype = 'float32'
    c.model.remat = False
    c.model.dropout_rate = 0.0
    c.data = prepared_data_config(
        name='dfdm', dir='', view=arg, quality='crf23', target='class_id', class_names=MODELS, size=32, frames=3
    )
    return c


def sweep(arg=None):
    for quality in ('crf0', 'crf10', 'crf23'):
        yield {'data.quality': quality}
