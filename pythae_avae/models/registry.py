"""A registry of this package's models, and its hook into Pythae's loaders.

Pythae 0.1.2 dispatches ``AutoModel.load_from_folder`` and ``AutoConfig.from_json_file`` through
hard-coded ``if/elif`` chains over config class names, so a plugin model cannot be reloaded by
name. Two layers fix that:

* every model here resolves its own config through :data:`MODEL_REGISTRY`
  (:meth:`PluginLoadMixin._load_model_config_from_folder`), so ``AVAE.load_from_folder`` works
  without touching Pythae;
* :func:`register_with_pythae` (run on ``import pythae_avae``) wraps Pythae's dispatchers
  (``AutoModel``'s loaders, ``AutoConfig.from_json_file``, ``TrainingPipeline.__call__``): a
  registered name or training config is served from the registry, anything else goes to the
  original method.
  It is idempotent and :func:`unregister_from_pythae` restores the originals.
"""

import json
import os
from typing import Dict, NamedTuple, Optional, Type

from pythae.models import AutoModel
from pythae.models.auto_model import AutoConfig
from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline

from .serialization import (ARCHITECTURE_FILE, PARTS, PickleRefusedError, check_no_pickles, load_model, net_specs,
                            pickle_allowed, read_weights, save_model)


class RegisteredModel(NamedTuple):
    model_cls: type
    config_cls: type


#: config class name (as written in ``model_config.json``) -> model and config classes
MODEL_REGISTRY: Dict[str, RegisteredModel] = {}

_ORIGINALS: Dict[str, object] = {}


def register_model(config_cls: Type):
    """Class decorator adding a model to :data:`MODEL_REGISTRY` under its config's name."""

    def decorator(model_cls):
        name = config_cls.__name__
        known = MODEL_REGISTRY.get(name)
        identity = (model_cls.__module__, model_cls.__qualname__)
        if known is not None and (known.model_cls.__module__, known.model_cls.__qualname__) != identity:
            raise ValueError(f"config name {name!r} is already registered to {known.model_cls}")
        MODEL_REGISTRY[name] = RegisteredModel(model_cls, config_cls)
        return model_cls

    return decorator


def _config_name(json_path: str) -> str:
    """The ``name`` field of a config file; a damaged file is named in the error."""
    try:
        with open(json_path) as f:
            name = json.load(f)["name"]
    except (ValueError, KeyError, TypeError) as err:  # bad JSON, no "name", not an object
        raise ValueError(
            f"config file {json_path!r} is not a model config written by model.save() "
            f"(needs a JSON object with a 'name'): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(name, str):
        raise ValueError(f"config file {json_path!r}: 'name' must be a string, got {name!r}")
    return name


def read_config_name(dir_path: str) -> str:
    path = os.path.join(dir_path, "model_config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Missing model config file ('model_config.json') in {dir_path}: "
            "expected a folder written by model.save()"
        )
    return _config_name(path)


def config_from_json_file(json_path: str):
    """Loads any config: ours through the registry, Pythae's through its ``AutoConfig``."""
    name = _config_name(json_path)
    if name in MODEL_REGISTRY:
        return MODEL_REGISTRY[name].config_cls.from_json_file(json_path)
    return AutoConfig.from_json_file(json_path)


class PluginLoadMixin:
    """Lets ``Model.load_from_folder`` work for models Pythae's ``AutoConfig`` does not know,
    and saves/loads without pickles (see :mod:`pythae_avae.models.serialization`)."""

    @classmethod
    def _load_model_config_from_folder(cls, dir_path):
        read_config_name(dir_path)
        return config_from_json_file(os.path.join(dir_path, "model_config.json"))

    @classmethod
    def _load_model_weights_from_folder(cls, dir_path):
        return read_weights(dir_path)

    def save(self, dir_path: str):
        """Pythae's folder layout (``model_config.json``, ``model.pt``, ``environment.json``);
        this package's nets go to ``architecture.json`` (name + arguments), not to pickles.
        The other layout's files are removed: a folder saved over must not rebuild old nets."""
        if all(net_specs(self).values()):
            save_model(self, dir_path)
            stale = [f"{part}.pkl" for part in PARTS]
        else:  # a user's own net: only a pickle can hold it (Pythae's way)
            super().save(dir_path)
            stale = [ARCHITECTURE_FILE]
        for name in stale:
            if os.path.isfile(os.path.join(dir_path, name)):
                os.remove(os.path.join(dir_path, name))

    @classmethod
    def load_from_folder(cls, dir_path: str, allow_pickle: bool = False):
        """Loads a saved model of this class. Folders holding ``*.pkl`` files (a user's own
        nets, saved the Pythae way) are refused unless ``allow_pickle=True`` or
        ``PYTHAE_AVAE_ALLOW_PICKLE=1``: unpickling runs code from the folder. Another model's
        folder is refused (``AutoModel.load_from_folder`` loads any)."""
        name, expected = read_config_name(dir_path), _config_cls_of(cls)
        if expected is not None and name != expected.__name__:
            # Pythae names a model's config "<Model>Config"
            saved = (MODEL_REGISTRY[name].model_cls.__name__ if name in MODEL_REGISTRY
                     else name[: -len("Config")] if name.endswith("Config") else name)
            raise ValueError(f"{dir_path!r} holds a model of class {saved} (config {name}), not {cls.__name__}: "
                             f"load it with {saved}.load_from_folder or AutoModel.load_from_folder")
        return load_model(cls, dir_path, allow_pickle)

    @classmethod
    def load_from_hf_hub(cls, hf_hub_path: str, allow_pickle: bool = False):
        """Loads a model pushed with ``push_to_hf_hub`` (Pythae's own method ignores
        ``architecture.json`` and so cannot rebuild this package's nets)."""
        return cls.load_from_folder(_hf_hub_folder(hf_hub_path, allow_pickle), allow_pickle=allow_pickle)


def _hf_hub_folder(hf_hub_path: str, allow_pickle: bool) -> str:
    """Downloads a model pushed with ``push_to_hf_hub`` (which saves it with :meth:`save`) into
    the hub's cache; returns the local folder. The nets come from ``architecture.json``, or
    from pickles only when ``allow_pickle`` (they run code: refused otherwise)."""
    try:
        from huggingface_hub import hf_hub_download
        # both names in huggingface_hub.utils from 0.x to 1.x and later (RemoteEntryNotFoundError is 1.x only)
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as err:
        raise ModuleNotFoundError("loading from the Hugging Face hub needs `pip install huggingface_hub`") from err
    folder = os.path.dirname(hf_hub_download(repo_id=hf_hub_path, filename="model_config.json"))
    hf_hub_download(repo_id=hf_hub_path, filename="model.pt")
    try:
        hf_hub_download(repo_id=hf_hub_path, filename=ARCHITECTURE_FILE)
    except EntryNotFoundError as err:  # a user's own nets: Pythae's pickles
        # offline, a file not cached is a miss whether or not the repository has it: only the
        # cache's record of its absence (an earlier online call's 404) says pickles
        if isinstance(err, LocalEntryNotFoundError) and not _cached_as_absent(hf_hub_path, ARCHITECTURE_FILE):
            raise
        with open(os.path.join(folder, "model_config.json")) as f:
            config = json.load(f)
        parts = [part for part in PARTS if not config.get(f"uses_default_{part}", True)]
        if parts and not pickle_allowed(allow_pickle):
            raise PickleRefusedError(
                f"{hf_hub_path!r} holds pickled nets ({', '.join(p + '.pkl' for p in parts)}): loading them runs "
                "code from the repository. Pass allow_pickle=True only if you trust its author")
        for part in parts:
            hf_hub_download(repo_id=hf_hub_path, filename=f"{part}.pkl")
    return folder


def _cached_as_absent(repo_id: str, filename: str) -> bool:
    import huggingface_hub

    absent = getattr(huggingface_hub, "_CACHED_NO_EXIST", None)
    return absent is not None and huggingface_hub.try_to_load_from_cache(repo_id=repo_id, filename=filename) is absent


def _config_cls_of(model_cls) -> Optional[type]:
    """The registered config class of ``model_cls`` or of its nearest registered ancestor."""
    by_model = {entry.model_cls: entry.config_cls for entry in MODEL_REGISTRY.values()}
    return next((by_model[c] for c in model_cls.__mro__ if c in by_model), None)


def load_any_model(dir_path: str, allow_pickle: Optional[bool] = None):
    """Loads a saved model folder: this package's models through the registry, Pythae's own
    through Pythae's ``AutoModel`` (hooked or not).

    Args:
        dir_path: a folder written by ``model.save()``.
        allow_pickle: load a folder holding ``*.pkl`` files (a user's own nets). Unpickling
            executes code from the folder: opt in only for folders you trust.
            ``PYTHAE_AVAE_ALLOW_PICKLE=1`` does the same for code that cannot pass the keyword.
            Unset (None), this package's models refuse pickles and Pythae's own are loaded
            Pythae's way (it unpickles their custom nets without asking); ``False`` refuses
            pickles for every folder, whatever model its config names.
    """
    name = read_config_name(dir_path)
    if name in MODEL_REGISTRY:
        return MODEL_REGISTRY[name].model_cls.load_from_folder(dir_path, allow_pickle=bool(allow_pickle))
    if allow_pickle is not None:  # an explicit choice holds for Pythae's models too
        check_no_pickles(dir_path, allow_pickle)
    original = _ORIGINALS.get("AutoModel.load_from_folder", AutoModel.__dict__["load_from_folder"])
    return original.__func__(AutoModel, dir_path)


def _auto_model_load_from_folder(cls, dir_path: str, allow_pickle: Optional[bool] = None):
    """``AutoModel.load_from_folder`` once :func:`register_with_pythae` has run: see
    :func:`load_any_model`."""
    return load_any_model(dir_path, allow_pickle)


def _auto_model_load_from_hf_hub(cls, hf_hub_path: str, allow_pickle: bool = False):
    """``AutoModel.load_from_hf_hub`` once :func:`register_with_pythae` has run: this package's
    models through their own loader, Pythae's through Pythae's."""
    from huggingface_hub import hf_hub_download

    name = _config_name(hf_hub_download(repo_id=hf_hub_path, filename="model_config.json"))
    if name in MODEL_REGISTRY:
        return MODEL_REGISTRY[name].model_cls.load_from_hf_hub(hf_hub_path, allow_pickle=allow_pickle)
    return _ORIGINALS["AutoModel.load_from_hf_hub"].__func__(cls, hf_hub_path, allow_pickle=allow_pickle)


def _auto_config_from_json_file(cls, json_path: str):
    name = _config_name(json_path)
    if name in MODEL_REGISTRY:
        return MODEL_REGISTRY[name].config_cls.from_json_file(json_path)
    return _ORIGINALS["AutoConfig.from_json_file"].__func__(cls, json_path)


def _training_pipeline_call(self, train_data=None, eval_data=None, callbacks=None):
    """Pythae's ``TrainingPipeline.__call__`` once :func:`register_with_pythae` has run: a
    training config of this package's (``ResumableTrainerConfig``, ``DataFreeTrainerConfig``)
    is trained by its own trainer through :class:`pythae_avae.pipelines.TrainingPipeline`;
    Pythae's ``isinstance`` chain would hand it to a plain ``BaseTrainer`` (no checkpoints, no
    resume, AVAE-SS trained on data) without a word. Any other config: Pythae's own method."""
    from ..pipelines.training import TrainingPipeline, registered_trainer

    if registered_trainer(self.training_config) is None:
        return _ORIGINALS["TrainingPipeline.__call__"](self, train_data, eval_data, callbacks=callbacks)
    pipeline = TrainingPipeline(model=self.model, training_config=self.training_config)
    pipeline(train_data, eval_data, callbacks=callbacks)
    self.trainer = pipeline.trainer


#: name -> (owner, attribute, replacement) of what :func:`register_with_pythae` wraps
_HOOKS = {
    "AutoModel.load_from_folder": (AutoModel, "load_from_folder", classmethod(_auto_model_load_from_folder)),
    "AutoModel.load_from_hf_hub": (AutoModel, "load_from_hf_hub", classmethod(_auto_model_load_from_hf_hub)),
    "AutoConfig.from_json_file": (AutoConfig, "from_json_file", classmethod(_auto_config_from_json_file)),
    "TrainingPipeline.__call__": (PythaeTrainingPipeline, "__call__", _training_pipeline_call),
}


def is_registered_with_pythae() -> bool:
    return bool(_ORIGINALS)


def register_with_pythae() -> None:
    """Makes ``pythae.models.AutoModel`` load this package's models and Pythae's
    ``TrainingPipeline`` run this package's trainers. Safe to call twice."""
    if _ORIGINALS:
        return
    for key, (owner, attr, hook) in _HOOKS.items():
        _ORIGINALS[key] = owner.__dict__[attr]
        setattr(owner, attr, hook)


def unregister_from_pythae() -> None:
    """Restores Pythae's original dispatchers (mainly for tests)."""
    for key, (owner, attr, _) in _HOOKS.items():
        if key in _ORIGINALS:
            setattr(owner, attr, _ORIGINALS.pop(key))
