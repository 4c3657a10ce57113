import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC, LinearSVC

from eval_fixtures import LinearEncoder, make_data
from pythae_avae.evaluation import LinearProbe, fit_probes, linear_from_sklearn

SHAPE = (1, 4, 4)


@pytest.fixture
def encoder():
    return LinearEncoder(16, d=6)


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("estimator", [None, LinearSVC(max_iter=20000), RidgeClassifier()])
def test_adapter_predictions_equal_sklearn(encoder, n_classes, standardize, estimator):
    X, y = make_data(300, SHAPE, n_classes, encoder=encoder)
    probe = LinearProbe(encoder, estimator=estimator, standardize=standardize, device="cpu").fit(X[:200], y[:200])
    with torch.no_grad():
        logits = probe.to_torch()(torch.from_numpy(X[200:]))
    assert logits.shape == (100, len(probe.classes_))  # binary tasks too get two logits
    assert len(probe.classes_) >= min(n_classes, 5)
    torch_pred = probe.classes_[logits.argmax(1).numpy()]
    assert (torch_pred != probe.predict(X[200:])).sum() == 0
    decision = probe.decision_function(X[200:])
    if len(probe.classes_) == 2:
        gap = (logits[:, 1] - logits[:, 0]).numpy() - decision
    else:
        gap = logits.numpy() - decision
    assert np.abs(gap).max() < 1e-4 * max(1.0, np.abs(decision).max())
    if estimator is None:  # logistic regression: softmax of the logits is predict_proba
        np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probe.predict_proba(X[200:]), atol=1e-5)


@pytest.mark.parametrize("n_classes", [3, 4])
def test_estimators_without_one_score_per_class_are_refused(encoder, n_classes):
    # SVC's coef_ rows are one-vs-one votes: argmax of them is not its prediction, so the
    # attacked head would not be the probe that is reported
    X, y = make_data(200, SHAPE, n_classes, encoder=encoder)
    with pytest.raises(TypeError, match=rf"one linear score per class \(coef_ of {n_classes} rows.*SVC's gives "
                                        rf"{n_classes * (n_classes - 1) // 2} logits agreeing with predict on"):
        LinearProbe(encoder, estimator=SVC(kernel="linear"), device="cpu").fit(X, y)
    LinearProbe(encoder, estimator=SVC(kernel="linear"), device="cpu").fit(X, np.minimum(y, 1))  # 2 classes: fine


@pytest.mark.parametrize("with_mean,with_std", [(False, True), (True, False), (False, False)])
def test_adapter_follows_a_scaler_that_leaves_out_the_mean_or_the_scale(with_mean, with_std):
    # StandardScaler(with_mean=False) still sets mean_, which transform does not subtract
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 5))
    y = (X @ np.arange(1, 6) > 45).astype(int) + (X[:, 0] > 4)
    scaler = StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    est = LogisticRegression(max_iter=2000).fit(scaler.transform(X), y)
    with torch.no_grad():
        logits = linear_from_sklearn(est, scaler)(torch.from_numpy(X).float()).double().numpy()
    np.testing.assert_allclose(logits, est.decision_function(scaler.transform(X)), rtol=1e-4, atol=1e-3)


def test_binary_logits_are_symmetric():
    est = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    lin = linear_from_sklearn(est)
    out = lin(torch.tensor([[5.0]]))
    assert out[0, 0] == pytest.approx(-out[0, 1].item())


def test_sklearn_api_and_clone(encoder):
    X, y = make_data(120, SHAPE, 3, encoder=encoder)
    probe = LinearProbe(encoder, standardize=True, device="cpu")
    assert probe.get_params()["standardize"] is True
    probe.set_params(batch_size=7)
    fitted = probe.fit(X, y)
    assert fitted is probe and 0 <= probe.score(X, y) <= 1 and probe.score(X, y) > 0.8
    assert probe.predict_proba(X).shape == (120, 3)
    twin = clone(probe)
    assert twin.batch_size == 7 and not hasattr(twin, "estimator_")


def test_encoder_untouched_and_mode_restored(encoder):
    enc = LinearEncoder(16, d=6, batch_norm=True)
    enc.train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    X, y = make_data(80, SHAPE, 3, encoder=encoder)
    LinearProbe(enc, device="cpu").fit(X, y).predict(X)
    assert enc.training
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics included
    assert all(p.grad is None for p in enc.parameters())
    enc.bn.eval()  # mixed modes (e.g. frozen BatchNorm in a training encoder) come back as they were
    LinearProbe(enc, device="cpu").fit(X, y)
    assert enc.training and not enc.bn.training


def test_multi_task_embeds_once(encoder, monkeypatch):
    X, y = make_data(100, SHAPE, 3, encoder=encoder)
    calls = []
    original = LinearProbe.transform
    monkeypatch.setattr(LinearProbe, "transform", lambda self, X: calls.append(1) or original(self, X))
    probes = fit_probes(encoder, X, {"a": y, "b": (y == 0).astype(int)}, device="cpu")
    assert len(calls) == 1 and set(probes) == {"a", "b"}
    assert list(probes["b"].classes_) == [0, 1]


def test_bad_inputs_name_the_problem(encoder):
    probe = LinearProbe(encoder, device="cpu")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probe.fit(np.full((4, *SHAPE), 2.0, dtype=np.float32), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        probe.fit(np.zeros((4, 16), dtype=np.float32), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="labels"):
        probe.fit(np.zeros((4, *SHAPE), dtype=np.float32), [0, 1])
    fitted = probe.fit(*make_data(40, SHAPE, 3, encoder=encoder))
    with pytest.raises(ValueError, match="not fitted on"):
        fitted.label_indices([5])
