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

from pythae.models.nn import BaseDecoder, BaseEncoder

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
        package = __name__.rsplit(".", 1)[0]
        if not (cls.__module__ + ".").startswith(package + ".") or init is None \
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


#: the Pythae base each part of a model must derive from
_PART_BASES = {"encoder": BaseEncoder, "decoder": BaseDecoder}


def nets_from_file(path: str, parts=("encoder", "decoder")) -> dict:
    """Rebuilds the nets an ``architecture.json`` describes (``{part: spec}``).

    Args:
        path: the ``architecture.json`` written by a model's ``save``.
        parts: the keys to rebuild, ``"encoder"`` and/or ``"decoder"``.

    Returns:
        ``{part: net}``, fresh nets of this package's classes (weights are loaded afterwards).

    Raises:
        ValueError: naming ``path``, when the file is not JSON, lacks a part, names a class
            outside this package, gives arguments the class refuses, or swaps the roles.
    """
    try:
        with open(path) as f:
            specs = json.load(f)
        nets = {part: build_from_spec(specs[part]) for part in parts}
    except (ValueError, KeyError, TypeError) as err:  # a hand-edited or damaged file
        raise ValueError(f"architecture file {path!r} cannot be rebuilt: {type(err).__name__}: {err}") from err
    for part, net in nets.items():
        if not isinstance(net, _PART_BASES[part]):  # Pythae's own error would not name the file
            raise ValueError(f"architecture file {path!r}: the {part} is a {type(net).__name__}")
    return nets
