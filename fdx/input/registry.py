"""Views by name: `@register_view('frame')` on a view class makes `config.data.train_view = 'frame'` build it.

A view is a frozen dataclass turning one item of a source into one example (a dict of arrays), or into a list of
`examples_per_item` examples (a real frame and its self-blended fake). Its dataclass fields are its config fields,
set in the sub-dict `config.data.<view name>`; a view with an `augment` field also takes the fields of `Augment`
(`flip`, `crop_scale`, `jitter`, `resize_then_center_crop`), which apply on the train split only. A view may live in
a method's own module (registered when the method is imported) or be named by a `package.module:Class` path.

Hooks with defaults in `View`: `source` (the items the view reads, from the split's records and index), `qualities`
(the prepared qualities it decodes), `for_eval` (the view without training randomness), `spec` (an example's shapes,
for synthetic batches), `display` (an example as uint8 RGB for `fdx eval --save-maps`).
"""

import dataclasses
import importlib
from typing import Any

import numpy as np

VIEWS: dict[str, type] = {}


def register_view(name: str):
    """Class decorator: registers a view class under `name`."""

    def register(cls):
        if name in VIEWS and VIEWS[name].__qualname__ != cls.__qualname__:  # a module imported twice may re-register
            raise ValueError(f'view {name!r} is registered twice ({VIEWS[name].__qualname__}, {cls.__qualname__})')
        VIEWS[name] = cls
        cls.view_name = name
        return cls

    return register


class View:
    """Defaults of the view hooks (subclasses are frozen dataclasses)."""

    view_name = ''
    examples_per_item = 1
    display_key = 'image'  # the input drawn under maps
    normalisation = 'xception'

    def source(self, records, index):
        """The items of a split: by default its records (`index` is its `fdx.input.records.SplitIndex`)."""
        del index
        return records

    def qualities(self) -> tuple[str, ...]:
        """Prepared qualities the view decodes (checked against the dataset before training)."""
        quality = getattr(self, 'quality', None)
        return (quality,) if quality else ()

    def for_eval(self) -> 'View':
        """The view for evaluation: the same, without training augmentation (deterministic crops are kept)."""
        augment = getattr(self, 'augment', None)
        if augment is None:
            return self
        return dataclasses.replace(self, augment=augment.deterministic())

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]] | None:
        """`{key: (shape, dtype)}` of one example, when the view knows it without reading data (`fdx bench step`,
        `fdx summary` synthesise batches from it); None: read one real batch instead."""
        return None

    def display(self, example: dict[str, Any]) -> np.ndarray:
        """uint8 RGB [H, W, 3] of an example's input (a clip shows its first frame)."""
        from fdx.input.views import denormalise

        image = np.asarray(example[self.display_key])
        return denormalise(image.reshape(-1, *image.shape[-3:])[0], self.normalisation)


def view_class(name: str) -> type:
    """The view class registered as `name`, or the class at a `package.module:Class` path."""
    import fdx.input.synthetic  # noqa: F401  (registers the built-in views)
    import fdx.input.views  # noqa: F401

    if name in VIEWS:
        return VIEWS[name]
    if ':' in name:
        module, attr = name.split(':', 1)
        cls = getattr(importlib.import_module(module), attr, None)
        if isinstance(cls, type) and issubclass(cls, View):
            return cls
        raise ValueError(f'view {name!r}: {module} has no View class {attr!r}')
    raise ValueError(f'unknown view {name!r}; registered: {", ".join(sorted(VIEWS))} (or a package.module:Class path)')


def view_fields(cls: type) -> dict[str, Any]:
    """The config fields of a view class with their defaults (`augment` expands to `Augment`'s fields)."""
    from fdx.input.views import Augment

    out = {}
    for field in dataclasses.fields(cls):
        if field.name == 'augment':
            out.update({f.name: f.default for f in dataclasses.fields(Augment)})
        elif field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            out[field.name] = field.default_factory()
        else:
            raise TypeError(f'view {cls.__qualname__}: field {field.name!r} needs a default (it is a config field)')
    return out


def check_fields(name: str, fields: dict[str, Any]) -> None:
    """Raises naming the view, the field and the valid ones if `fields` holds a field the view does not have."""
    valid = view_fields(view_class(name))
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        owners = {
            field: [other for other, cls in sorted(VIEWS.items()) if other != name and field in view_fields(cls)]
            for field in unknown
        }
        detail = '; '.join(
            f'{field!r}' + (f' (a field of view {", ".join(owners[field])})' if owners[field] else '')
            for field in unknown
        )
        raise ValueError(f'config.data.{name}: unknown field {detail}; view {name!r} has fields {", ".join(valid)}')


def build_view(name: str, fields: dict[str, Any], train: bool) -> View:
    """The view `name` with config `fields` (validated); on eval splits, `for_eval()` of it."""
    from fdx.input.views import Augment

    check_fields(name, fields)
    cls = view_class(name)
    kwargs = {**view_fields(cls), **{k: _plain(v) for k, v in fields.items()}}
    if 'augment' in {f.name for f in dataclasses.fields(cls)}:
        augment_names = [f.name for f in dataclasses.fields(Augment)]
        kwargs['augment'] = Augment(**{k: kwargs.pop(k) for k in augment_names})
    view = cls(**kwargs)
    return view if train else view.for_eval()


def _plain(value: Any) -> Any:
    """ConfigDict/list values (JSON round trips turn tuples into lists) as the tuples and dicts views expect."""
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value
