"""Nets that can be rebuilt from a name and arguments, so saved models need no pickle.

Pythae saves custom encoders/decoders with ``cloudpickle`` and loads them by unpickling, which
runs whatever code the file holds. Every net of this package derives from :class:`Rebuildable`:
its constructor arguments are recorded in ``net_spec`` (``{"class": ..., "kwargs": ...}``), the
models write that to ``architecture.json`` instead of a pickle, and :func:`build_from_spec`
rebuilds the net from this package's own classes only.
"""

import functools
import inspect
import json
from typing import Dict, Optional

from ._layers import latent_dim_of

#: class name -> class, for the nets defined in this package only
NET_CLASSES: Dict[str, type] = {}


class Rebuildable:
    """Mixin recording a net's constructor arguments in ``self.net_spec``.

    Only classes defined inside ``pythae_avae.nets`` are registered; the spec is set only when
    the instance's class is exactly the recorded one, so a user's subclass (unknown here) has
    ``net_spec = None`` and is saved the Pythae way.
    """

    net_spec: Optional[dict] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        # skip classes from elsewhere, and copies rebuilt by cloudpickle (Pythae pickles nets
        # "by value"): their __init__ already records, for the original class
        if not cls.__module__.startswith(__name__.rsplit(".", 1)[0]) or init is None \
                or getattr(init, "records_net_spec", False) or cls.__name__ in NET_CLASSES:
            return
        NET_CLASSES[cls.__name__] = cls
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            init(self, *args, **kw)
            if type(self) is cls:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self.net_spec = _spec(cls.__name__, {k: v for k, v in list(bound.arguments.items())[1:]})

        recording_init.records_net_spec = True
        cls.__init__ = recording_init


def _spec(name: str, kwargs: dict) -> Optional[dict]:
    if "latent_dim" in kwargs:
        kwargs["latent_dim"] = latent_dim_of(kwargs["latent_dim"])  # a config object -> its int
    try:
        json.dumps(kwargs)
    except TypeError:  # arguments that JSON cannot hold: saved the Pythae way
        return None
    return {"class": name, "kwargs": kwargs}


def build_from_spec(spec: dict):
    """A fresh net from ``{"class": name, "kwargs": {...}}``, for this package's classes only."""
    if not isinstance(spec, dict) or set(spec) != {"class", "kwargs"}:
        raise ValueError(f"a net spec must be {{'class': name, 'kwargs': {{...}}}}, got {spec!r}")
    if spec["class"] not in NET_CLASSES:
        raise ValueError(f"net class must be one of {sorted(NET_CLASSES)}, got {spec['class']!r}")
    return NET_CLASSES[spec["class"]](**spec["kwargs"])
