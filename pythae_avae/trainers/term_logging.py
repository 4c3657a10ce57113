"""Per-term loss logging for Pythae trainers.

Pythae 0.1.2's trainers hand only ``train_epoch_loss``/``eval_epoch_loss`` to callbacks. Our
models record every term of their loss in ``model.term_meter`` during ``forward``;
:class:`TermLoggerCallback` adds the epoch means to the ``logs`` dict that ``on_log`` passes to
every callback. Callbacks run in list order and share that dict, so when this callback comes
first, Pythae's ``WandbCallback``, ``MLFlowCallback`` and ``CometCallback`` log the terms too.
"""

import logging

from pythae.trainers.training_callbacks import TrainingCallback

logger = logging.getLogger(__name__)


def _unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


class TermLoggerCallback(TrainingCallback):
    """Adds ``train_epoch_<term>`` / ``eval_epoch_<term>`` means to the logged metrics.

    Use it first in the callback list of Pythae's stock ``TrainingPipeline``::

        pipeline(train_data, eval_data, callbacks=[TermLoggerCallback(), WandbCallback()])

    ``pythae_avae.pipelines.TrainingPipeline`` inserts it for you. Models without a
    ``term_meter`` (e.g. Pythae's own VAE) are left alone.

    Args:
        print_terms (bool): also write the terms to the console logger. Default: True.
    """

    def __init__(self, print_terms: bool = True):
        self.print_terms = print_terms
        self.history = []

    def on_epoch_begin(self, training_config, **kwargs):
        meter = getattr(_unwrap(kwargs.get("model")), "term_meter", None)
        if meter is not None:
            meter.reset()  # drop the trainer's sanity-check batch and any earlier calls

    def on_log(self, training_config, logs, **kwargs):
        meter = getattr(_unwrap(kwargs.get("model")), "term_meter", None)
        if meter is None:
            return
        terms = {k: v for k, v in meter.means().items() if not k.endswith("_epoch_loss")}
        logs.update(terms)
        self.history.append(dict(logs))
        meter.reset()
        rank = kwargs.get("rank", -1)
        if self.print_terms and terms and rank in (-1, 0):
            (kwargs.get("logger") or logger).info(
                "Terms: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(terms.items()))
            )
