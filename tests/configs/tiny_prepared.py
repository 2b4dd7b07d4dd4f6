"""The tiny classifier on a dataset prepared by `fdx prepare` (set config.data.dir); `arg` picks the data view."""

from fdx import train
from fdx.input import data_config
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
    view = {'quality': 'crf23', 'size': 32, **({'frames': 3} if arg == 'clip' else {})}
    c.data = data_config(name='dfdm', dir='', train_view=arg, target='class_id', class_names=MODELS, **{arg: view})
    return c


def sweep(arg='frame'):
    for quality in ('crf0', 'crf10', 'crf23'):
        yield {f'data.{arg}.quality': quality}
