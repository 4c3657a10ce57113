"""Linear probes on frozen mean codes, as scikit-learn estimators, and their torch adapter.

Protocol (paper §4): train the encoder without labels, freeze it, use ``mu(x)`` as the
representation and fit one linear classifier per task normally (no attack). The probe is then
turned into one differentiable ``nn.Module`` (images -> logits) so it can be attacked.
"""

from typing import Dict, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .features import as_encoder, embed


def default_estimator(C: float = 1.0):
    """The probe: logistic regression with inverse L2 strength ``C`` (scikit-learn's default 1)."""
    return LogisticRegression(C=C, max_iter=5000)


def check_labels(y, n: int, name: str = "y") -> np.ndarray:
    """``y`` as a numpy array of ``n`` labels, one per image, refused by ``name`` otherwise."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be a 1-d array of {n} labels (one per image), got shape {y.shape}")
    return y


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Encoder mean ``mu(x)`` (frozen) followed by a scikit-learn linear classifier.

    Args:
        encoder: a Pythae model (its ``.encoder`` is used) or a Pythae encoder.
        estimator: an unfitted linear classifier with ``coef_``/``intercept_`` after fitting
            (default: ``LogisticRegression(max_iter=5000)``); it is cloned.
        standardize: standardise features first (folded into :meth:`to_torch`). Default False:
            the paper's probe is on raw ``mu``.
        batch_size, device, progress: how images are embedded (device: cuda if available).

    Example:
        >>> probe = LinearProbe(model).fit(x_train, y_train)
        >>> probe.score(x_test, y_test)
        >>> classifier = probe.to_torch()   # images -> logits, for attacks
    """

    def __init__(self, encoder=None, estimator=None, standardize: bool = False,
                 batch_size: int = 256, device: Optional[str] = None, progress: bool = False):
        self.encoder = encoder
        self.estimator = estimator
        self.standardize = standardize
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    # ---- features ---------------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """``mu(X)`` as float32 numpy ``(N, d)``."""
        if self.encoder is None:
            raise ValueError("encoder must be a Pythae model or encoder, got None")
        return embed(self.encoder, X, self.batch_size, self.device, self.progress)

    def fit(self, X, y):
        """Embeds the images ``X`` (N, C, H, W) in [0, 1] and fits the classifier on ``y``."""
        features = self.transform(X)
        return self.fit_features(features, check_labels(y, len(features)))

    def fit_features(self, features: np.ndarray, y):
        """Fits on precomputed ``mu`` features (see :func:`fit_probes`)."""
        features = np.asarray(features, dtype=np.float64)
        y = check_labels(y, len(features))
        if len(np.unique(y)) < 2:
            raise ValueError(f"y must contain at least 2 classes, got only {np.unique(y).tolist()}")
        self.scaler_ = StandardScaler().fit(features) if self.standardize else None
        if self.scaler_ is not None:
            features = self.scaler_.transform(features)
        self.estimator_ = clone(self.estimator if self.estimator is not None else default_estimator())
        self.estimator_.fit(features, y)
        if not hasattr(self.estimator_, "coef_"):
            raise TypeError(f"estimator must be linear (have coef_), got {type(self.estimator_).__name__}")
        self.classes_ = self.estimator_.classes_
        self._check_one_score_per_class(features)
        return self

    def _check_one_score_per_class(self, scaled_features: np.ndarray):
        """The attacked head must be the probe: its argmax has to be ``predict``. Estimators
        whose ``coef_`` rows are not one score per class (e.g. ``SVC``'s one-vs-one) fail here
        (rounding float64 to float32 may flip a point on the boundary, hence the 0.1%)."""
        head = linear_from_sklearn(self.estimator_)  # on the scaled features: no scaler folded in
        with torch.no_grad():
            ours = head(torch.from_numpy(scaled_features).float()).argmax(1).numpy()
        agree = np.mean(ours == self.label_indices(self.estimator_.predict(scaled_features)))
        if head.out_features != len(self.classes_) or agree < 0.999:
            raise TypeError(
                f"estimator must give one linear score per class (coef_ of {len(self.classes_)} rows, or 1 "
                f"for 2 classes) whose argmax is its prediction; {type(self.estimator_).__name__}'s gives "
                f"{head.out_features} logits agreeing with predict on {100 * agree:.1f}% of the training "
                "features. Use e.g. LogisticRegression or LinearSVC"
            )

    def _scaled(self, features):
        features = np.asarray(features, dtype=np.float64)
        return self.scaler_.transform(features) if self.scaler_ is not None else features

    # ---- scikit-learn API on images -------------------------------------------------------
    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._scaled(self.transform(X)))

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._scaled(self.transform(X)))

    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._scaled(self.transform(X)))

    def predict_features(self, features):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._scaled(features))

    def score_features(self, features, y) -> float:
        return accuracy_score(y, self.predict_features(features))

    # ---- torch adapter ----------------------------------------------------------------------
    def to_linear(self) -> nn.Linear:
        """The probe (scaler folded in) as a float32 ``nn.Linear`` with one logit per class."""
        check_is_fitted(self, "estimator_")
        return linear_from_sklearn(self.estimator_, self.scaler_)

    def to_torch(self) -> "ProbeClassifier":
        """Images -> logits (all classes; binary: two symmetric logits), differentiable."""
        return ProbeClassifier(as_encoder(self.encoder), self.to_linear())

    def label_indices(self, y) -> np.ndarray:
        """Labels -> indices into ``classes_`` (the logits' order); unknown labels raise."""
        check_is_fitted(self, "estimator_")
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        if (idx >= len(self.classes_)).any() or (self.classes_[np.minimum(idx, len(self.classes_) - 1)] != y).any():
            raise ValueError(f"y holds labels the probe was not fitted on (classes: {self.classes_.tolist()})")
        return idx


def linear_from_sklearn(estimator, scaler: Optional[StandardScaler] = None) -> nn.Linear:
    """Folds ``scaler`` and a fitted linear classifier into one float32 ``nn.Linear``.

    Binary heads get the symmetric logits ``[-s/2, s/2]`` (``s`` = decision function): their
    softmax is ``predict_proba`` and, unlike ``[0, s]``, the cross-entropy gradient does not
    underflow to 0 in float32 for large margins (attack notes §3.2).
    """
    W = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    b = np.broadcast_to(np.asarray(estimator.intercept_, dtype=np.float64), (W.shape[0],)).copy()
    if scaler is not None:
        # with_mean=False still sets mean_ (the data's mean), which transform then does not subtract
        mean = scaler.mean_ if scaler.with_mean and scaler.mean_ is not None else np.zeros(W.shape[1])
        scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones(W.shape[1])
        W = W / scale
        b = b - W @ mean
    if W.shape[0] == 1:
        W, b = np.concatenate([-W / 2, W / 2]), np.array([-b[0] / 2, b[0] / 2])
    linear = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(W))
        linear.bias.copy_(torch.from_numpy(b))
    return linear.requires_grad_(False).eval()


class ProbeClassifier(nn.Module):
    """``x -> linear(mu(x))``: the composed classifier that attacks target.

    The encoder is used as given (not copied); attacks put it in eval mode and take
    gradients with respect to the input only, so its weights, ``.grad`` and BatchNorm
    statistics are left untouched. No ``torch.no_grad`` inside: gradients must reach ``x``.
    """

    def __init__(self, encoder: nn.Module, linear: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encoder(x).embedding)


def fit_probes(model_or_encoder, X, labels: Dict[str, np.ndarray], features: Optional[np.ndarray] = None,
               **probe_params) -> Dict[str, LinearProbe]:
    """One :class:`LinearProbe` per task, sharing a single embedding pass of ``X``.

    Args:
        model_or_encoder: a Pythae model or encoder.
        X: images (N, C, H, W) in [0, 1] (unused when ``features`` is given).
        labels: ``{task: labels (N,)}``.
        features: precomputed ``mu(X)``.
        **probe_params: :class:`LinearProbe` parameters (``estimator``, ``standardize``, ...).
    """
    if not labels:
        raise ValueError("labels must map at least one task name to its labels")
    probes = {task: LinearProbe(model_or_encoder, **probe_params) for task in labels}
    if features is None:
        features = next(iter(probes.values())).transform(X)
    for task, y in labels.items():
        probes[task].fit_features(features, check_labels(y, len(features), f"labels[{task!r}]"))
    return probes
