"""Saving and loading models without executing code from files.

Pythae's ``save`` pickles custom encoders/decoders (``encoder.pkl``, ``decoder.pkl``, with
``cloudpickle``) and ``load_from_folder`` unpickles them: loading a folder runs code from it.
Here:

* nets of this package (:class:`pythae_avae.nets.rebuild.Rebuildable`) are written as names +
  arguments to ``architecture.json`` and rebuilt from this package's classes on load;
* weights are read with ``torch.load(..., weights_only=True)``;
* a folder holding any ``*.pkl`` is refused unless the caller opts in, with
  ``load_from_folder(path, allow_pickle=True)`` or the environment variable
  ``PYTHAE_AVAE_ALLOW_PICKLE=1`` (for code that cannot pass the keyword, e.g. Pythae's
  ``AutoModel``). **Opting in executes code from those files: only for folders you trust.**
"""

import glob
import json
import os
import sys
from copy import deepcopy

import torch
from pythae.models.base.base_config import EnvironmentConfig

from ..nets.rebuild import nets_from_file

ARCHITECTURE_FILE = "architecture.json"
ALLOW_PICKLE_ENV = "PYTHAE_AVAE_ALLOW_PICKLE"
PARTS = ("encoder", "decoder")


class PickleRefusedError(PermissionError):
    """A model folder holds pickles and the caller did not opt in to running them."""


def pickle_allowed(allow_pickle: bool = False) -> bool:
    return bool(allow_pickle) or os.environ.get(ALLOW_PICKLE_ENV, "") == "1"


def check_no_pickles(dir_path: str, allow_pickle: bool = False) -> None:
    """Raises :class:`PickleRefusedError` naming the pickles of ``dir_path`` unless allowed."""
    pickles = sorted(os.path.basename(p) for p in glob.glob(os.path.join(dir_path, "*.pkl")))
    if pickles and not pickle_allowed(allow_pickle):
        raise PickleRefusedError(
            f"{dir_path!r} holds pickle files {pickles}: loading them runs code from the folder. "
            f"Pass allow_pickle=True (or set {ALLOW_PICKLE_ENV}=1) only if you trust its source; "
            "models saved by this package with its own nets need no pickle"
        )


def short_reason(err: Exception) -> str:
    """``Type: first line`` of an error (torch's load errors run to many lines of advice)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"


def read_weights(dir_path: str) -> dict:
    """The ``model_state_dict`` of ``<dir_path>/model.pt``, read with ``weights_only=True``."""
    path = os.path.join(dir_path, "model.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing weights file {path!r}: expected a folder written by model.save()")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
    except Exception as err:
        raise ValueError(
            f"weights file {path!r} cannot be read as a model.save() state ({short_reason(err)})"
        ) from err


def net_specs(model) -> dict:
    """``{part: spec}`` of the model's nets; a user's own net has spec None."""
    return {part: getattr(getattr(model, part), "net_spec", None) for part in PARTS}


def save_model(model, dir_path: str) -> None:
    """Pythae's folder layout with our nets as ``architecture.json`` instead of pickles (every
    part must have a spec: see :func:`net_specs`)."""
    specs = net_specs(model)
    os.makedirs(dir_path, exist_ok=True)
    EnvironmentConfig(python_version=f"{sys.version_info[0]}.{sys.version_info[1]}").save_json(
        dir_path, "environment")
    model.model_config.save_json(dir_path, "model_config")
    with open(os.path.join(dir_path, ARCHITECTURE_FILE), "w") as f:
        json.dump(specs, f, indent=2)
    torch.save({"model_state_dict": deepcopy(model.state_dict())}, os.path.join(dir_path, "model.pt"))


def load_model(cls, dir_path: str, allow_pickle: bool = False):
    """Rebuilds a ``cls`` model saved by :func:`save_model` (or by Pythae, if pickles are allowed)."""
    check_no_pickles(dir_path, allow_pickle)
    model_config = cls._load_model_config_from_folder(dir_path)
    weights = read_weights(dir_path)
    arch_path = os.path.join(dir_path, ARCHITECTURE_FILE)
    if os.path.isfile(arch_path):
        nets = nets_from_file(arch_path, PARTS)
    else:
        nets = {
            "encoder": None if model_config.uses_default_encoder else cls._load_custom_encoder_from_folder(dir_path),
            "decoder": None if model_config.uses_default_decoder else cls._load_custom_decoder_from_folder(dir_path),
        }
    model = cls(model_config, **nets)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # torch's message lists tensors, not which files disagree
        raise RuntimeError(
            f"weights file {os.path.join(dir_path, 'model.pt')!r} does not fit the model that "
            f"model_config.json and {ARCHITECTURE_FILE} describe: {err}"
        ) from err
    return model

