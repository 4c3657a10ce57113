"""A Pythae trainer that survives interruption and runs under DDP on CPU or GPU.

Pythae 0.1.2's ``BaseTrainer`` writes ``optimizer.pt`` into its checkpoints but never reads it
back, checkpoints the *best* model rather than the current one, sets up DDP only on CUDA and
stops on a NaN loss without saying where. :class:`ResumableTrainer` keeps Pythae's interface
(config, callbacks, progress bar, ``final_model`` folder) and adds:

* **Checkpoints every** ``checkpoint_every`` **optimizer steps** in ``<output_dir>/checkpoint``
  (written to a temporary folder, then swapped in, so a kill at any moment leaves a complete
  one): model, optimizer, scheduler, epoch, step, best model, the training folder.
* **Resume**: the same command continues from that checkpoint. Randomness is *step-indexed*:
  before every step the generator is seeded from ``(seed, rank, step)`` and every epoch's
  shuffle from ``(seed, epoch)``, so a resumed run takes exactly the steps of an uninterrupted
  one and ends with the same weights (CPU, same thread count) without storing RNG states.
* **Signals**: SIGINT (Ctrl-C) and SIGTERM finish the current step, save a checkpoint and
  exit (``KeyboardInterrupt`` / ``SystemExit(143)``); a second Ctrl-C stops at once. Under
  DDP the ranks agree on the step: a signal that lands after a step's flag exchange stops
  every rank after the next one.
* **Non-finite loss**: checked before the update; raises :class:`NonFiniteLossError` with the
  step number, leaving the parameters and the last good checkpoint untouched (in memory,
  BatchNorm's running statistics have seen that step's batch: resume from the checkpoint).
* **DDP** (``torchrun --nproc_per_node=N``): NCCL on GPUs, gloo on CPU (the tested path).
  Each step's global batch (``per_device_train_batch_size × world_size`` images of one
  seeded permutation) is split across ranks, gradients are averaged by DDP, stop and NaN
  flags and epoch losses are all-reduced, and only rank 0 writes files.
"""

import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import signal
import threading
from copy import deepcopy
from typing import Iterable, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from pythae.data.datasets import BaseDataset, DatasetOutput, collate_dataset_output
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from pythae.trainers.base_trainer.base_trainer import logger
from pythae.trainers.training_callbacks import ProgressBarCallback, TrainingCallback
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..fingerprints import dataset_fingerprint
from ..models.serialization import short_reason
from ..validation import check_int
from .registry import register_trainer

CHECKPOINT = "checkpoint"
TRAINER_STATE = "trainer_state.pt"
#: training fields a resumed run must share with its checkpoint. Loading the optimizer's
#: state would otherwise keep the checkpoint's learning rate without a word, and a new seed
#: would splice two step sequences into one run.
RESUME_INVARIANTS = ("learning_rate", "optimizer_cls", "optimizer_params", "scheduler_cls",
                     "scheduler_params", "seed", "amp")


class CheckpointMismatchError(ValueError):
    """The output folder's checkpoint cannot be this run's (other settings, a longer run, other
    weights, an unreadable file): the command-line scripts turn it into advice about their
    ``--output-dir``. ``reason`` is the message without ``way_out``, the advice to a caller in
    Python."""

    def __init__(self, reason: str, way_out: str = "Use another output_dir, or resume=False to start over"):
        super().__init__(f"{reason}. {way_out}")
        self.reason = reason


class NonFiniteLossError(ArithmeticError):
    """The training loss became NaN or infinite; the weights were not updated with it."""


@dataclass(config=ConfigDict(extra="forbid"))
class ResumableTrainerConfig(BaseTrainerConfig):
    """``BaseTrainerConfig`` plus checkpointing and resume; unknown keys raise.

    Parameters (besides Pythae's, e.g. ``num_epochs``, ``learning_rate``, ``output_dir``):
        checkpoint_every (int): optimizer steps between checkpoints (also written after the
            last step and on SIGINT/SIGTERM). Default: 200.
        resume (bool): continue from ``<output_dir>/checkpoint`` when it exists. Default: True.
        resume_from (str): a checkpoint folder to start from (e.g. another run's) when
            ``<output_dir>/checkpoint`` does not exist yet; once this run has written its own,
            a rerun continues from that one. Default: None.
        dist_backend: Pythae's field; ``"auto"`` (default) means NCCL when training on CUDA,
            gloo otherwise.
        progress_bar (bool): Pythae's per-epoch tqdm bars (Pythae always adds them; off for
            logs written to files). Default: True.
    """

    checkpoint_every: int = 200
    resume: bool = True
    resume_from: Optional[str] = None
    dist_backend: str = "auto"
    progress_bar: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_int(self.checkpoint_every, "checkpoint_every", why="optimizer steps")
        # Pythae's config takes them unchecked: 0 epochs saved the untrained model as final,
        # batch 0 failed later in a division
        check_int(self.num_epochs, "num_epochs")
        check_int(self.per_device_train_batch_size, "per_device_train_batch_size")
        check_int(self.per_device_eval_batch_size, "per_device_eval_batch_size")
        if self.resume_from is not None and not os.path.isfile(os.path.join(self.resume_from, TRAINER_STATE)):
            raise FileNotFoundError(
                f"resume_from={self.resume_from!r} must be a checkpoint folder holding {TRAINER_STATE} "
                f"(written by ResumableTrainer into <output_dir>/{CHECKPOINT})"
            )


def _step_seed(seed: int, rank: int, step: int) -> int:
    if rank <= 0:  # the single-process formula every committed run was trained with
        return (seed * 1_000_003 + step) % (2**63 - 1)
    # other ranks: a hash, so that no rank replays another's noise some steps apart (a
    # rank offset would: rank 1's step k drew rank 0's step k + offset)
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0]) % (2**63 - 1)


def _data_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the generator a step's batch is fetched with (a dataset's own random
    transforms): apart from the step's seed, so that the data's noise and the model's differ."""
    state = np.random.SeedSequence([seed, max(rank, 0), step, 1]).generate_state(1, dtype=np.uint64)
    return int(state[0]) % (2**63 - 1)


def unwrap_model(model):
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The complete checkpoint folder of a run, or None (``.old``: killed while swapping)."""
    for folder in (CHECKPOINT, CHECKPOINT + ".old"):
        path = os.path.join(output_dir, folder)
        if os.path.isfile(os.path.join(path, TRAINER_STATE)) and os.path.isfile(os.path.join(path, "model.pt")):
            return path
    return None


def named_differences(recorded: dict, ours: dict, ours_label: str = "this run", partial=()) -> List[str]:
    """``key=<recorded> (<ours_label>: <ours>)`` for every key whose value differs, sorted.

    Keys in ``partial`` hold dicts that older records lack (e.g. a model's full config): they
    are compared field by field (``key.field=...``) on the fields both sides have, so that a
    record made before the key, or a config field added since, is no difference."""
    changed = []
    for k in sorted(set(recorded) | set(ours)):
        theirs, mine = recorded.get(k), ours.get(k)
        if k in partial:
            if isinstance(theirs, dict) and isinstance(mine, dict):
                common = set(theirs) & set(mine)
                changed += [f"{k}.{d}" for d in named_differences({f: theirs[f] for f in common},
                                                                   {f: mine[f] for f in common}, ours_label)]
        elif theirs != mine:
            changed.append(f"{k}={theirs!r} ({ours_label}: {mine!r})")
    return changed


def config_defaults(config_cls) -> dict:
    """What a field of ``config_cls`` missing from a record (a checkpoint, a benchmark's settings)
    ran with, as JSON values: its default, or the config's ``ABSENT_MEANS`` where older runs meant
    another value (the factory-made defaults left out)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls) if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps({**defaults, **getattr(config_cls, "ABSENT_MEANS", {})}))


def _fsync(path: str):
    """Flushes a file, or a folder's entries (renames), to the disk."""
    try:
        # a file opened for writing: Windows' fsync (FlushFileBuffers) refuses a read-only handle
        fd = os.open(path, os.O_RDONLY if os.path.isdir(path) else os.O_RDWR)
    except OSError:
        if os.path.isdir(path):  # Windows cannot open a folder to flush it: skipped there
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_checkpoint_file(folder: str, name: str):
    path = os.path.join(folder, name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: name it and the way out
        raise CheckpointMismatchError(
            f"checkpoint file {path!r} cannot be read ({short_reason(err)}); expected a "
            f"{name} written by ResumableTrainer", f"Delete {folder!r}, or pass resume=False to start over"
        ) from err


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, while training runs."""

    def __init__(self):
        self.signum, self._previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum
        logger.warning(f"{signal.Signals(signum).name} received: saving a checkpoint after this step")

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            # None: the handler was installed from C, and Python cannot reinstall it
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@register_trainer(ResumableTrainerConfig)
class ResumableTrainer(BaseTrainer):
    """Pythae's trainer with checkpoints, exact resume, signal handling and DDP on any device.

    Args:
        model: a Pythae model.
        train_dataset: a Pythae dataset (or what ``TrainingPipeline`` makes of an array).
        eval_dataset: optional evaluation dataset (selects the ``final_model``, as in Pythae).
        training_config (ResumableTrainerConfig): the training configuration.
        callbacks (List[TrainingCallback]): Pythae callbacks.
    """

    def __init__(self, model, train_dataset, eval_dataset=None,
                 training_config: Optional[ResumableTrainerConfig] = None,
                 callbacks: Optional[List[TrainingCallback]] = None):
        # Pythae's __init__ is not reused: it wraps CPU models in DDP with device_ids (an
        # error) and never initialises the process group on CPU.
        training_config = training_config or ResumableTrainerConfig()
        if not isinstance(training_config, ResumableTrainerConfig):
            raise TypeError(f"training_config must be a ResumableTrainerConfig, got {type(training_config).__name__}")
        self.training_config = training_config
        self.model_config, self.model_name = model.model_config, model.model_name
        self.world_size, self.rank = training_config.world_size, training_config.rank
        self.local_rank = training_config.local_rank
        self.distributed = self.world_size > 1
        use_cuda = torch.cuda.is_available() and not training_config.no_cuda
        self.dist_backend = training_config.dist_backend
        if self.dist_backend == "auto":
            self.dist_backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            self.device = torch.device("cuda", max(self.local_rank, 0)) if self.distributed else "cuda"
            if self.distributed:
                torch.cuda.set_device(self.device)
        else:
            self.device = "cpu"
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(self.dist_backend, init_method="env://",
                                    world_size=self.world_size, rank=self.rank)
        self.amp_context = torch.autocast("cuda") if training_config.amp else contextlib.nullcontext()
        model = model.to(self.device)
        model.device = self.device
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.train_loader = self.get_train_dataloader(train_dataset)  # for callbacks (len, dataset)
        self.eval_loader = self.get_eval_dataloader(eval_dataset) if eval_dataset is not None else None
        if eval_dataset is None:
            training_config.keep_best_on_train = True
        self.callbacks = callbacks
        # Pythae's check is a training-mode forward: it would move BatchNorm's running
        # statistics, making a fresh run's start depend on the data's state (e.g. colours)
        buffers = [b.clone() for b in model.buffers()]
        with torch.no_grad():
            self._run_model_sanity_check(model, self._epoch_batches(1, 0))
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        if self.distributed:
            model = DistributedDataParallel(model, device_ids=[self.device.index] if use_cuda else None)
        self.model = model

    # ----------------------------------------------------------------- data
    @property
    def global_batch_size(self) -> int:
        return self.training_config.per_device_train_batch_size * max(self.world_size, 1)

    def _setup_callbacks(self):
        super()._setup_callbacks()  # Pythae always adds its progress bar
        if not self.training_config.progress_bar:
            self.callback_handler.callbacks = [c for c in self.callback_handler.callbacks
                                               if not isinstance(c, ProgressBarCallback)]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_dataset) / self.global_batch_size)

    def _epoch_batches(self, epoch: int, start: int) -> Iterable:
        """This rank's batches of ``epoch`` from step ``start`` on: one permutation seeded by
        ``(seed, epoch)``, cut into global batches, each split into equal per-rank slices
        (the last global batch is padded from the permutation's start under DDP)."""
        n, g, b = len(self.train_dataset), self.global_batch_size, self.training_config.per_device_train_batch_size
        generator = torch.Generator().manual_seed(_step_seed(self.training_config.seed, 0, epoch))
        order = torch.randperm(n, generator=generator).tolist()
        batches = []
        for first in range(0, n, g):
            chunk = order[first:first + g]
            if self.distributed:
                chunk = (chunk + order * math.ceil(g / n))[:g]
                chunk = chunk[max(self.rank, 0) * b:(max(self.rank, 0) + 1) * b]
            batches.append(chunk)
        if type(self.train_dataset) is BaseDataset:
            # Pythae's tensor dataset (what the pipeline makes of arrays): index whole batches,
            # the values of the DataLoader's item-by-item fetch and collate without their cost
            data, labels = self.train_dataset.data, self.train_dataset.labels
            return (DatasetOutput(data=data.index_select(0, index), labels=labels.index_select(0, index))
                    for index in map(torch.as_tensor, batches[start:]))
        return DataLoader(self.train_dataset, batch_sampler=batches[start:], collate_fn=collate_dataset_output)

    def _set_inputs_to_device(self, inputs):
        return type(inputs)(**{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()})

    # ---------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epoch, step_in_epoch, global_step, epoch_loss, best):
        # a finite loss with non-finite gradients puts NaN in the weights: never a "good" checkpoint
        if not all(bool(torch.isfinite(p).all()) for p in unwrap_model(self.model).parameters()):
            raise NonFiniteLossError(
                f"the weights hold NaN or inf after step {global_step} (epoch {epoch}), from non-finite "
                f"gradients; they were not saved; {self._last_good()}. Lower learning_rate or check the data."
            )
        if self.distributed:  # every rank saves together: resumed, each takes the ranks' mean
            epoch_loss = self._all_reduce([epoch_loss])[0] / self.world_size  # (same epoch sum)
        out = self.training_config.output_dir
        path, tmp, old = (os.path.join(out, CHECKPOINT + s) for s in ("", ".tmp", ".old"))
        if not self.is_main_process:  # rank 0 writes it; every rank's NaN message names it
            self.last_checkpoint, self.last_checkpoint_step = path, global_step
            return
        shutil.rmtree(tmp, ignore_errors=True)
        unwrap_model(self.model).save(tmp)
        meter = self._term_meter()
        torch.save({
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "epoch_loss": epoch_loss, "best": best, "best_skips_warmup": True, "training_dir": self.training_dir,
            "global_batch_size": self.global_batch_size, "model_name": self.model_name,
            "num_epochs": self.training_config.num_epochs,
            "settings": self._resume_settings(),
            "term_meter": meter.state() if meter is not None else None,
        }, os.path.join(tmp, TRAINER_STATE))
        # on disk before the swap: after a power cut (not only a kill) the folder named checkpoint
        # is then complete, or the swap had not happened and the previous one is still there
        for name in os.listdir(tmp):
            _fsync(os.path.join(tmp, name))
        _fsync(tmp)
        if os.path.isdir(path):
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync(out)  # the renames too: a checkpoint that reached the disk is found after a power cut
        shutil.rmtree(old, ignore_errors=True)
        self.last_checkpoint, self.last_checkpoint_step = path, global_step

    def _term_meter(self):
        return getattr(unwrap_model(self.model), "term_meter", None)

    def _resume_settings(self) -> dict:
        """What must not change between a checkpoint and the run that resumes it: the model's
        config (e.g. ``obs_var``, ``rho``), :data:`RESUME_INVARIANTS`, the training set's
        size (another size would also move every saved epoch position) and digest, and the
        nets' recorded arguments, as JSON values."""
        cfg = self.training_config
        return {
            "model_config": json.loads(unwrap_model(self.model).model_config.to_json_string()),
            "training": json.loads(json.dumps({k: getattr(cfg, k) for k in RESUME_INVARIANTS})),
            "data": self._data_settings(),
            "nets": self._net_settings(),
        }

    def _net_settings(self) -> dict:
        """The nets' classes, and the arguments of those that record them (this package's): a
        checkpoint of another activation, or of a user's net, can have the same weight shapes,
        which ``load_state_dict`` cannot tell. A user's class is named without its module, which
        differs between a script run as ``__main__`` and the same script imported."""
        settings = {}
        for part in ("encoder", "decoder"):
            net = getattr(unwrap_model(self.model), part, None)
            spec = getattr(net, "net_spec", None)
            if spec:
                settings[f"{part}.class"] = spec["class"]
                settings.update({f"{part}.{k}": v for k, v in spec["kwargs"].items()})
            elif net is not None:
                settings[f"{part}.class"] = type(net).__qualname__
        return json.loads(json.dumps(settings))

    def _data_settings(self) -> dict:
        if not hasattr(self, "_train_fingerprint"):  # once: a tensor dataset is hashed whole
            self._train_fingerprint = dataset_fingerprint(self.train_dataset)
        return {"train_size": len(self.train_dataset), "fingerprint": self._train_fingerprint}

    def _config_defaults(self) -> dict:
        return config_defaults(type(unwrap_model(self.model).model_config))

    def _load_checkpoint(self, path: str) -> dict:
        state, weights = (_read_checkpoint_file(path, name) for name in (TRAINER_STATE, "model.pt"))
        theirs = dict(model_name=state["model_name"], global_batch_size=state["global_batch_size"])
        ours = dict(model_name=self.model_name, global_batch_size=self.global_batch_size)
        # checkpoints written before settings were stored are checked on name and batch only
        settings = self._resume_settings() if "settings" in state else {}
        # a group the checkpoint lacks was not recorded yet (e.g. "data" before 2026-11-28)
        for group, values in state.get("settings", {}).items():
            if group == "model_config":  # a field added since the checkpoint ran at its default
                values = {**self._config_defaults(), **values}
            mine = settings[group]
            if group != "model_config":  # a key added since the checkpoint ran (e.g. "amp") was not recorded
                mine = {k: v for k, v in mine.items() if k in values}
            theirs.update({f"{group}.{k}": v for k, v in values.items()})
            ours.update({f"{group}.{k}": v for k, v in mine.items()})
        changed = named_differences(theirs, ours)
        if changed:
            raise CheckpointMismatchError(
                f"cannot resume from {path}: this run differs from the one that wrote it in "
                f"{'; '.join(changed)}"
            )
        last_step = self.steps_per_epoch() * self.training_config.num_epochs
        if state["global_step"] > last_step:
            raise CheckpointMismatchError(
                f"cannot resume from {path}: it holds {state['global_step']} steps, more than this run's "
                f"{last_step} ({self.training_config.num_epochs} epochs of {self.steps_per_epoch()}); its "
                f"model is not this run's",
                f"Ask for at least {state['global_step']} steps, use another output_dir, or resume=False to start over"
            )
        try:
            unwrap_model(self.model).load_state_dict(weights["model_state_dict"])
        except RuntimeError as err:  # e.g. another architecture: the settings do not record it
            raise CheckpointMismatchError(
                f"cannot resume from {path}: its weights do not fit this run's {type(unwrap_model(self.model)).__name__} "
                f"({short_reason(err)}); another architecture?"
            ) from err
        # load_state_dict already puts the moments on the parameters' device and leaves Adam's
        # step count on the CPU; moving that to CUDA too would sync once per parameter per step
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        return state

    def _set_output_dir(self):
        if getattr(self, "_resumed_training_dir", None):  # the interrupted run's folder
            self.training_dir = self._resumed_training_dir
            if self.is_main_process:
                os.makedirs(self.training_dir, exist_ok=True)
        else:
            super()._set_output_dir()

    # ------------------------------------------------------------- training
    def _all_reduce(self, values: List[float], op=None) -> List[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.dist_backend == "nccl" else "cpu")
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
        return t.tolist()

    def train(self, log_output_dir: str = None):
        """Trains for ``num_epochs`` epochs, continuing from a checkpoint when there is one.

        Args:
            log_output_dir: unused (Pythae's signature); progress goes to Pythae's logger.
        """
        cfg = self.training_config
        torch.manual_seed(cfg.seed)
        self.set_optimizer()
        self.set_scheduler()
        # the run's own checkpoint first: after an interruption it is ahead of resume_from
        resume = (latest_checkpoint(cfg.output_dir) if cfg.resume else None) or cfg.resume_from
        state = None
        if resume is not None:
            try:
                state = self._load_checkpoint(resume)
            except CheckpointMismatchError as err:
                if resume != cfg.resume_from:
                    raise
                # resume=False would not help: it skips this run's own checkpoint, not resume_from
                raise CheckpointMismatchError(err.reason, "Pass as resume_from a checkpoint of a run with these "
                                                          "settings, or resume_from=None to start over") from None
            # the run folder's name only: a moved output_dir continues in its new place
            self._resumed_training_dir = os.path.join(
                cfg.output_dir, os.path.basename(os.path.normpath(state["training_dir"])))
            logger.info(f"Resuming from {resume} at step {state['global_step']} (epoch {state['epoch']})")
        self._set_output_dir()
        self._setup_callbacks()
        self.callback_handler.on_train_begin(training_config=cfg, model_config=self.model_config)
        steps = self.steps_per_epoch()
        last_step = steps * cfg.num_epochs
        epoch, start = (state["epoch"], state["step_in_epoch"]) if state else (1, 0)
        if start >= steps:
            epoch, start = epoch + 1, 0
        global_step = state["global_step"] if state else 0
        epoch_loss = state["epoch_loss"] if state and start else 0.0
        best = self._resumed_best(state)
        self.last_checkpoint, self.last_checkpoint_step = (resume, global_step) if state else (None, None)
        # what a checkpoint written now would hold; None while the weights and it disagree
        # (inside an optimizer step or an epoch's end), so a stray KeyboardInterrupt
        # (e.g. a second Ctrl-C) still saves a consistent checkpoint when it can
        self._position = None
        with _StopRequest() as stop:
            try:
                while epoch <= cfg.num_epochs:
                    self.callback_handler.on_epoch_begin(training_config=cfg, epoch=epoch,
                                                         train_loader=self.train_loader, eval_loader=self.eval_loader)
                    meter = self._term_meter()
                    if start and state and state.get("term_meter") and meter is not None:
                        # the resumed epoch's terms so far (the callback has just reset the meter)
                        meter.load_state(state["term_meter"])
                    self.callback_handler.on_train_step_begin(training_config=cfg, train_loader=self.train_loader,
                                                              epoch=epoch, rank=self.rank)
                    self.model.train()
                    batches = self._seeded_fetches(self._epoch_batches(epoch, start), global_step + 1)
                    for step_in_epoch, inputs in enumerate(batches, start=start + 1):
                        self._position = None
                        loss, stop_agreed = self._train_one_step(inputs, epoch, global_step + 1, stop)
                        # under DDP every rank must stop after the same step: a signal that
                        # lands after the step's all-reduce waits for the next step's
                        stopping = stop_agreed if self.distributed else stop.signum is not None
                        epoch_loss += loss
                        global_step += 1
                        # an epoch's last step is a position only once its end has run: a checkpoint
                        # saved before would resume past the scheduler step and best-model check
                        self._position = (epoch, step_in_epoch, global_step, epoch_loss, best) \
                            if step_in_epoch < steps else None
                        self.callback_handler.on_train_step_end(training_config=cfg)
                        if step_in_epoch == steps:
                            self._position = None
                            best = self._end_epoch(epoch, epoch_loss / steps, best)
                            epoch_loss = 0.0
                            self._position = (epoch, step_in_epoch, global_step, epoch_loss, best)
                        # not at every epoch's end: a colorMNIST epoch is 63 steps, and one
                        # checkpoint took ~90 ms (2-3 steps of the MLP VAE) on a 2-core CPU
                        if stopping or global_step % cfg.checkpoint_every == 0 or global_step == last_step:
                            self._save_checkpoint(*self._position)
                        if stopping:
                            self._stop(stop.signum, global_step)
                    epoch, start = epoch + 1, 0
                if self.distributed and self._all_reduce([float(stop.signum is not None)], dist.ReduceOp.MAX)[0]:
                    self._stop(stop.signum or signal.SIGTERM, global_step)  # signalled in the last step
            except KeyboardInterrupt:
                if self._position is not None and self._position[2] != self.last_checkpoint_step \
                        and not self.distributed:
                    self._save_checkpoint(*self._position)
                    logger.warning(f"interrupted: checkpoint saved at step {self._position[2]}; rerun to continue")
                raise
        self._finish(best)

    def _last_good(self) -> str:
        # after resume_from and before this run's first checkpoint, the good one is resume_from
        return (f"last good checkpoint: {self.last_checkpoint} (step {self.last_checkpoint_step})"
                if self.last_checkpoint is not None else "no checkpoint was written yet")

    def _seeded_fetches(self, batches: Iterable, first_step: int) -> Iterator:
        """``batches``, each fetched after seeding torch's generator from ``(seed, rank, step)``:
        a dataset's random transforms then draw the same numbers in a resumed run as in an
        uninterrupted one (the step itself is seeded again, by :meth:`_seed_step`)."""
        batches = iter(batches)
        for step in itertools.count(first_step):
            torch.random.default_generator.manual_seed(_data_seed(self.training_config.seed, self.rank, step))
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch

    def _seed_step(self, global_step: int):
        """Seeds the generators a step draws from: the CPU's, and CUDA's when training there.

        Not ``torch.manual_seed``: where CUDA is present but not initialised it formats a
        stack trace on every call (to queue the CUDA seed), ~1.5 ms per step on a 2-core CPU.
        """
        seed = _step_seed(self.training_config.seed, self.rank, global_step)
        torch.random.default_generator.manual_seed(seed)
        if str(self.device).startswith("cuda"):
            torch.cuda.manual_seed_all(seed)

    def _train_one_step(self, inputs, epoch, global_step, stop):
        """One optimizer step; returns its loss and whether any rank had been asked to stop
        when the step began (all-reduced, so every rank reads the same)."""
        self._seed_step(global_step)
        inputs = self._set_inputs_to_device(inputs)
        with self.amp_context:
            output = self.model(inputs, epoch=epoch, dataset_size=len(self.train_dataset), uses_ddp=self.distributed)
        value = output.loss.item()  # the step's one device sync, as in Pythae's loop
        local_bad = 0.0 if math.isfinite(value) else 1.0
        stop_flag, bad = self._all_reduce([1.0 if stop.signum is not None else 0.0, local_bad],
                                          dist.ReduceOp.MAX if self.distributed else None)
        if stop_flag and stop.signum is None:
            stop.signum = signal.SIGTERM  # another rank was asked to stop
        if bad:
            raise NonFiniteLossError(
                f"training loss is {value} at step {global_step} (epoch {epoch}); the weights were "
                f"not updated with it; {self._last_good()}. Lower learning_rate or check the data."
            )
        self._optimizers_step(output)
        return value, bool(stop_flag)

    def _end_epoch(self, epoch, train_loss, best) -> dict:
        cfg = self.training_config
        metrics = {"train_epoch_loss": self._all_reduce([train_loss])[0] / max(self.world_size, 1)}
        unwrap_model(self.model).update()
        if self.eval_loader is not None:  # scheduler steps on the eval loss, as in Pythae
            metrics["eval_epoch_loss"] = self._all_reduce([self.eval_step(epoch)])[0] / max(self.world_size, 1)
            self._schedulers_step(metrics["eval_epoch_loss"])
        else:
            self._schedulers_step(metrics["train_epoch_loss"])
        key = "train" if cfg.keep_best_on_train else "eval"
        value = metrics[f"{key}_epoch_loss"]
        # a warm-up epoch's loss (AVAE's warmup_epoch) leaves part of the objective out, lower by
        # construction: not a candidate for the best model (the final_model folder)
        full_objective = self._warmup_weight(epoch) >= 1.0
        if full_objective and value < best[key]:
            best = {**best, key: value, "model": deepcopy(unwrap_model(self.model).state_dict())}
        if cfg.steps_saving is not None and epoch % cfg.steps_saving == 0 and self.is_main_process:
            # Pythae's per-epoch folders (of the current model, not the best one as in Pythae)
            self.save_checkpoint(model=self.model, dir_path=self.training_dir, epoch=epoch)
        self.model.train()
        self.callback_handler.on_epoch_end(training_config=cfg)
        self.callback_handler.on_log(cfg, metrics, logger=logger, global_step=epoch, rank=self.rank)
        return best

    def _warmup_weight(self, epoch: int) -> float:
        return getattr(unwrap_model(self.model), "warmup_weight", lambda e: 1.0)(epoch)

    def _resumed_best(self, state: Optional[dict]) -> dict:
        """The checkpoint's best model (none without a checkpoint), unless it may be a warm-up
        epoch's: checkpoints written before warm-up epochs were excluded may hold one, whose lower
        loss no later epoch would beat. Those written since carry ``best_skips_warmup``, or (before
        that key) a model config with ``aux_samples``, added in the same commit as the rule."""
        none = {"eval": math.inf, "train": math.inf, "model": None}
        if state is None:
            return none
        best = state["best"]
        since_the_rule = state.get("best_skips_warmup") or "aux_samples" in state.get("settings", {}).get(
            "model_config", {})
        if best.get("model") is None or since_the_rule or self._warmup_weight(1) >= 1.0:
            return best
        logger.warning("the checkpoint's best model may be from a warm-up epoch (it was written before those were "
                       "excluded): the best model is chosen again from the epochs run from here on")
        return none

    def _stop(self, signum, global_step):
        if self.distributed:
            dist.barrier()  # rank 0 has written the checkpoint
        where = os.path.join(self.training_config.output_dir, CHECKPOINT)
        message = f"stopped at step {global_step}; checkpoint saved in {where}; rerun to continue"
        logger.warning(message)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt(message)
        raise SystemExit(128 + signum)

    def _finish(self, best):
        if self.is_main_process:
            final = deepcopy(unwrap_model(self.model))
            if best.get("model") is not None:
                final.load_state_dict(best["model"])
            self._best_model = final
            final_dir = os.path.join(self.training_dir, "final_model")
            final.save(final_dir)
            self.training_config.save_json(final_dir, "training_config")
            self.callback_handler.on_save(self.training_config)
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        self.callback_handler.on_train_end(self.training_config)
