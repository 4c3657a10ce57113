"""Build and train the paper's models by name, with a budget in iterations.

Used by ``examples/`` and ``benchmarks/``; every model goes through
:class:`pythae_avae.pipelines.TrainingPipeline` (Pythae's pipeline plus per-term logging).
"""

import argparse
import contextlib
import logging
import math
import os
import sys
from typing import Dict, List, Optional, Tuple

import torch

from .evaluation.features import default_device
from .models.registry import MODEL_REGISTRY
from .nets import ARCHITECTURES, build_nets
from .pipelines import TrainingPipeline
from .trainers.resumable import CheckpointMismatchError, ResumableTrainerConfig, unwrap_model
from .validation import check_int, check_number

#: command-line model name -> config class name in the registry
MODEL_NAMES: Dict[str, str] = {
    "VAE": "GaussianVAEConfig",
    "AVAE": "AVAEConfig",
    "SE": "SEConfig",
    "SE-AVAE": "SE_AVAE_Config",
    "AVAE-SS": "AVAE_SS_Config",
}


#: models with the AVAE's coupling to a delusion of the decoder's own (take ``rho`` and
#: ``aux_noise_std``; SE-AVAE and AVAE-SS inherit the AVAE's)
DELUSION_MODELS = ("AVAE", "SE-AVAE", "AVAE-SS")

#: ``--aux-noise-std`` of the colorMNIST commands when not given (``likelihood``: None, i.e.
#: sqrt(obs_var), the paper's delusion and :class:`AVAEConfig`'s default). At v = 0.5, 0.3 kept
#: 70.7 / 74.0% of digits at eps = 0.1 after 9,000 / 20,000 iterations, sqrt(v) 67.0 / 70.8%
#: (three seeds; RESULTS.md, Fig. 5 section, "The delusion's noise level"); measured on colorMNIST
#: only, so the model config keeps the paper's default
COMMAND_AUX_NOISE_STD: Optional[float] = 0.3


def _finite_nonnegative(text: str) -> Optional[float]:
    """``text`` as a finite float >= 0, else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def aux_noise_std_arg(text: str) -> Optional[float]:
    """``type`` of the commands' ``--aux-noise-std``: a finite std >= 0, or ``likelihood`` for
    None, the likelihood's own std sqrt(obs_var) (the paper's delusion)."""
    if text == "likelihood":
        return None
    value = _finite_nonnegative(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a finite std >= 0 or 'likelihood', got {text!r}")
    return value


def radius_arg(text: str) -> float:
    """``type`` of the commands' L-inf radius flags (``--eps``, ``--autoattack-eps``, ...): refused
    when the command is parsed, not by the evaluation after training."""
    value = _finite_nonnegative(text)
    if value is None or value > 1:  # 8 meant as 8/255 would break every image, after training
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (an L-inf radius on [0, 1] pixels: 8/255 is "
                                         f"{8 / 255:.4f}), got {text!r}")
    return value


def device_arg(text: str) -> str:
    """``type`` of the commands' ``--device`` flag: a device this machine lacks (``gpu``,
    ``cuda`` without a GPU, ``cuda:3`` with fewer) is refused when the command is parsed, not
    when training or the first attack starts."""
    try:
        return default_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def training_device_arg(text: str) -> str:
    """``type`` of ``--device`` in the commands that train: :func:`device_arg`, less what the
    trainer cannot run on (:func:`training_device`: ``mps`` would be refused after the data
    is loaded)."""
    device = device_arg(text)
    try:
        _trainer_device_type(device)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return device


def seed_arg(text: str) -> int:
    """``type`` of the commands' ``--seed`` / ``--seeds``: an int >= 0 (numpy's seed sequences
    and the evaluation refuse negative seeds, after training)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}")
    return value


def refuse_counts_below_one(parser: argparse.ArgumentParser, args: argparse.Namespace, names):
    """Stops the parse naming the flag of any count in ``names`` (attribute names) set below 1:
    checked before training, not by the evaluation after it."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def add_aux_noise_std_argument(parser: argparse.ArgumentParser, default: Optional[float] = COMMAND_AUX_NOISE_STD):
    """The commands' ``--aux-noise-std`` flag (see :func:`aux_noise_std_arg`)."""
    shown = "likelihood: sqrt(--obs-var), the paper's delusion" if default is None else f"{default:g}"
    parser.add_argument(
        "--aux-noise-std", type=aux_noise_std_arg, default=default, metavar="STD|likelihood",
        help=f"std of the noise on the delusion of AVAE, SE-AVAE and AVAE-SS (default: {shown})",
    )


def aux_noise_std_note(aux_noise_std: Optional[float]) -> str:
    """The settings-line words for a command's ``--aux-noise-std``."""
    return f", AVAE delusion noise std {'sqrt(obs_var)' if aux_noise_std is None else f'{aux_noise_std:g}'}"


def with_aux_noise_std(name: str, config: dict, aux_noise_std: Optional[float]) -> dict:
    """``config`` of model ``name`` with ``aux_noise_std`` added where it applies: a model with a
    noisy delusion (:data:`DELUSION_MODELS`, ``aux_noise`` not False) and a std given (None adds
    nothing, so settings recorded before the field existed still match)."""
    if name in DELUSION_MODELS and config.get("aux_noise", True) and aux_noise_std is not None:
        return {**config, "aux_noise_std": config.get("aux_noise_std", aux_noise_std)}
    return dict(config)


def available_models() -> List[str]:
    return [name for name, config in MODEL_NAMES.items() if config in MODEL_REGISTRY]




@contextlib.contextmanager
def command_line_checkpoints(output_dir: str):
    """For a script's ``main``: a checkpoint in ``output_dir`` that cannot be this command's run
    (another setting, a longer run, an unreadable file) stops the command with the reason and
    what to do on the command line, exit status 2, instead of a traceback ending in advice
    (``resume=False``) that only a Python caller can take."""
    try:
        yield
    except CheckpointMismatchError as err:
        print(f"error: {err.reason}\nThis command continues the runs in --output-dir {output_dir!r}: pass another "
              f"--output-dir for these settings, or delete that folder to start over.", file=sys.stderr)
        raise SystemExit(2) from err


def quiet_pythae() -> None:
    """For a command without ``--verbose``: Pythae sets INFO on each of its module loggers (dataset
    checks, trainer banners, folder names, between the progress bars); keep their warnings."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)


def process_rank() -> int:
    """This process's rank under torchrun (0 when not distributed): every rank trains, rank 0
    alone evaluates and writes the reports."""
    return int(os.environ.get("RANK", "0"))


def _trainer_device_type(device: str) -> torch.device:
    """``device`` parsed, if it is one the trainer runs on (CPU or CUDA); ValueError otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (the trainer runs on nothing else), got {device!r}")
    return parsed


def training_device(device: Optional[str]) -> str:
    """``"cpu"`` or ``"cuda"`` for the trainer's ``no_cuda``, from ``device`` (default:
    :func:`default_device`). Pythae's trainer knows only those two, so ``"cuda:N"`` makes GPU N
    the current device, and what it cannot honour is refused rather than run elsewhere."""
    device = device or default_device()
    parsed = _trainer_device_type(device)
    if parsed.type == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu'")
    if parsed.index is not None:
        torch.cuda.set_device(parsed.index)
    return "cuda"


def build_model(name: str, arch: str = "colormnist-conv", latent_dim: int = 64,
                seed: Optional[int] = None, **config):
    """A fresh model of the given name on the named architecture.

    Args:
        name: one of :data:`MODEL_NAMES` but ``"AVAE-SS"``, which post-trains a VAE
            (:func:`post_train_avae_ss`); ``"VAE"`` is :class:`GaussianVAE`.
        arch: a key of :data:`pythae_avae.nets.ARCHITECTURES`.
        latent_dim: latent dimension ``d``.
        seed: seeds the initial weights, so that a run's start does not depend on what the
            process did before (None: the current global generator).
        **config: further config fields (e.g. ``rho=0.9``, ``obs_var=0.5``); unknown ones raise.
    """
    model_cls = registered_model(name).model_cls
    if name == "AVAE-SS":
        raise ValueError(
            "AVAE-SS is not trained from scratch: train a VAE, then post_train_avae_ss(vae)"
        )
    config = model_config(name, arch, latent_dim, **config)  # before the seed: bad fields cost no draw
    if seed is not None:
        torch.manual_seed(seed)
    encoder, decoder = build_nets(arch, latent_dim)
    return model_cls(config, encoder=encoder, decoder=decoder)


def registered_model(name: str):
    """The registry entry (``model_cls``, ``config_cls``) of a model name of :data:`MODEL_NAMES`."""
    if name not in MODEL_NAMES or MODEL_NAMES[name] not in MODEL_REGISTRY:
        raise ValueError(f"model name must be one of {available_models()}, got {name!r}")
    return MODEL_REGISTRY[MODEL_NAMES[name]]


def model_config(name: str, arch: str = "colormnist-conv", latent_dim: int = 64, **config):
    """The config, defaults included, of a model of the given name on ``arch`` (AVAE-SS's: its
    fields besides those it copies from the VAE it post-trains). Args as :func:`build_model`'s."""
    config_cls = registered_model(name).config_cls
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    return config_cls(input_dim=ARCHITECTURES[arch][2], latent_dim=latent_dim, **config)


def epoch_budget(iterations: int, n_train: int, global_batch_size: int) -> Tuple[int, int]:
    """``(steps per epoch, epochs)`` that :func:`train_for_iterations` runs for a budget of
    ``iterations``: rounded up to whole epochs, so it makes ``epochs × steps per epoch`` steps."""
    # at least 1, so that empty data reaches the pipeline's check, which names it
    steps_per_epoch = max(1, math.ceil(n_train / global_batch_size))
    return steps_per_epoch, max(1, math.ceil(iterations / steps_per_epoch))


def data_free_budget(iterations: int, steps_per_epoch: int = 100) -> Tuple[int, int]:
    """``(steps per epoch, steps)`` that :func:`post_train_avae_ss` runs for a budget of
    ``iterations``: whole epochs of ``min(steps_per_epoch, iterations)`` steps."""
    per_epoch = min(steps_per_epoch, iterations)
    return per_epoch, math.ceil(iterations / per_epoch) * per_epoch


def _constant_lr(epochs: int) -> dict:
    return {}


def _cosine_lr(epochs: int) -> dict:
    # stepped once per epoch by the trainer (Pythae's convention), down to 0 at the last one
    return {"scheduler_cls": "CosineAnnealingLR", "scheduler_params": {"T_max": epochs, "eta_min": 0.0}}


#: ``lr_schedule`` name -> trainer-config fields for a schedule of ``epochs`` epochs
LR_SCHEDULES = {"constant": _constant_lr, "cosine": _cosine_lr}


def train_for_iterations(
    model,
    train_data,
    eval_data=None,
    iterations: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    output_dir: str = "outputs",
    device: Optional[str] = None,
    callbacks=None,
    chunk_iterations: Optional[int] = None,
    progress: bool = True,
    lr_schedule: str = "constant",
    schedule_iterations: Optional[int] = None,
    weight_decay: float = 0.0,
):
    """Trains ``model`` through the pipeline for about ``iterations`` optimiser steps.

    Pythae counts epochs; the budget is rounded up to whole epochs. ``batch_size`` is per
    process: under ``torchrun`` a step takes ``batch_size × WORLD_SIZE`` images. A checkpoint is written
    every ``chunk_iterations`` steps (default 500) to ``<output_dir>/pythae/checkpoint`` and on
    SIGINT/SIGTERM; called again with the same ``output_dir`` and a freshly built model, it
    continues from there with the same result as an uninterrupted run (or returns at once
    when finished). ``progress=False`` drops Pythae's per-epoch bars. See
    :class:`~pythae_avae.trainers.ResumableTrainer`.

    ``lr_schedule`` (a key of :data:`LR_SCHEDULES`): ``constant`` (the paper's Adam, the
    default) or ``cosine`` (annealed to 0, stepped per epoch) over ``schedule_iterations``
    (default ``iterations``); a run trained in stages gives every stage the final budget, so a
    stage is a snapshot of one schedule and resumes into the next. On colorMNIST the cosine
    schedule measured less robust over 9,000 iterations and no more over 30,000 (RESULTS.md,
    Fig. 5 section).

    ``weight_decay`` > 0 trains with AdamW's decoupled decay of every parameter (biases,
    BatchNorm scales and the decoder's included) instead of Adam (the paper: none), a pull toward
    smaller weights and so, it was hoped, a smoother encoder; on colorMNIST 0.01 measured level
    with Adam over three seeds (RESULTS.md, Fig. 5 section).

    Returns:
        The model after the last step, in eval mode (Pythae's ``final_model`` folder holds the
        best-loss model instead).
    """
    check_int(iterations, "iterations", why="optimizer steps")
    check_int(batch_size, "batch_size", why="images per step and process")
    if chunk_iterations is not None:
        check_int(chunk_iterations, "chunk_iterations", why="steps between checkpoints")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {lr_schedule!r}")
    schedule_iterations = iterations if schedule_iterations is None else check_int(
        schedule_iterations, "schedule_iterations", why="steps the schedule spans")
    if schedule_iterations < iterations:
        raise ValueError(f"schedule_iterations must be >= iterations ({iterations}), got {schedule_iterations}")
    weight_decay = check_number(weight_decay, "weight_decay", why="AdamW's decoupled decay; 0 for Adam")
    optimizer = {"optimizer_cls": "AdamW", "optimizer_params": {"weight_decay": weight_decay}} if weight_decay else {}
    world_size = max(1, int(os.environ.get("WORLD_SIZE", 1)))  # under torchrun: global batch
    _, num_epochs = epoch_budget(iterations, len(train_data), batch_size * world_size)
    _, schedule_epochs = epoch_budget(schedule_iterations, len(train_data), batch_size * world_size)
    device = training_device(device)
    config = ResumableTrainerConfig(
        output_dir=os.path.join(output_dir, "pythae"),
        num_epochs=num_epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=256,
        learning_rate=learning_rate,
        seed=seed,
        no_cuda=device == "cpu",
        checkpoint_every=chunk_iterations or 500,
        progress_bar=progress,
        **LR_SCHEDULES[lr_schedule](schedule_epochs),
        **optimizer,
    )
    pipeline = TrainingPipeline(model, config)
    pipeline(train_data, eval_data, callbacks=list(callbacks or []))
    return unwrap_model(pipeline.trainer.model).eval()


def post_train_avae_ss(
    pretrained,
    config: Optional[dict] = None,
    iterations: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    output_dir: str = "outputs",
    device: Optional[str] = None,
    steps_per_epoch: int = 100,
    progress: bool = True,
):
    """AVAE-SS: post-trains a copy of ``pretrained``'s encoder for about ``iterations`` data-free
    steps (rounded up to whole epochs of ``steps_per_epoch``); the decoder stays frozen.

    Args:
        pretrained: a trained Pythae VAE-family model or its saved folder.
        config: :class:`AVAE_SS_Config` fields (e.g. ``{"rho": 0.975}``).
        progress: Pythae's per-epoch progress bars (off for logs written to files).

    Returns:
        The post-trained :class:`AVAE_SS`, in eval mode, also saved to
        ``<output_dir>/last_model``.
    """
    from .models import AVAE_SS
    from .trainers import DataFreeTrainerConfig

    check_int(iterations, "iterations", why="data-free steps")
    check_int(steps_per_epoch, "steps_per_epoch", why="data-free steps per epoch")
    steps_per_epoch, num_steps = data_free_budget(iterations, steps_per_epoch)
    model = AVAE_SS.from_pretrained(pretrained, **(config or {}))
    device = training_device(device)
    training_config = DataFreeTrainerConfig(
        output_dir=os.path.join(output_dir, "pythae"),
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        no_cuda=device == "cpu",
        checkpoint_every=steps_per_epoch,
        progress_bar=progress,
    )
    pipeline = TrainingPipeline(model, training_config)
    pipeline()
    model = unwrap_model(pipeline.trainer.model)
    if pipeline.trainer.is_main_process:
        model.save(os.path.join(output_dir, "last_model"))
    return model.eval()


def train_by_name(
    name: str,
    train_data,
    eval_data=None,
    trained: Optional[dict] = None,
    arch: str = "colormnist-conv",
    latent_dim: int = 64,
    config: Optional[dict] = None,
    output_dir: str = "outputs",
    callbacks=None,
    **training,
):
    """Trains the model ``name`` into ``<output_dir>/runs/<name>`` and caches it in ``trained``.

    ``"AVAE-SS"`` post-trains ``trained["VAE"]`` (training that VAE first if missing, with the
    config fields a VAE has). ``config`` holds model fields (unknown ones raise);
    ``training`` goes to :func:`train_for_iterations` / :func:`post_train_avae_ss`
    (``iterations``, ``batch_size``, ``learning_rate``, ``seed``, ``device``).
    """
    trained = {} if trained is None else trained
    if name in trained:
        return trained[name]
    config = dict(config or {})
    out = os.path.join(output_dir, "runs", name)
    if name == "AVAE-SS":
        if "VAE" not in trained:
            vae_fields = set(registered_model("VAE").config_cls.__dataclass_fields__)
            train_by_name("VAE", train_data, eval_data, trained, arch, latent_dim,
                          {k: v for k, v in config.items() if k in vae_fields}, output_dir, callbacks, **training)
        training.pop("chunk_iterations", None)
        model = post_train_avae_ss(trained["VAE"], config, output_dir=out, **training)
    else:
        model = build_model(name, arch, latent_dim, seed=training.get("seed", 0), **config)
        model = train_for_iterations(model, train_data, eval_data, output_dir=out, callbacks=callbacks, **training)
    trained[name] = model
    return model
