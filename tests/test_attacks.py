import logging
import warnings

import numpy as np
import pytest
import torch

from eval_fixtures import LinearEncoder, make_data
from pythae_avae.evaluation import (
    LinearProbe,
    autoattack_config,
    autoattack_robust_mask,
    pgd_linf,
    pgd_robust_mask,
)

SHAPE = (3, 6, 6)
D = 108


def linear_setup(n_classes=7, n=400, seed=0):
    encoder = LinearEncoder(D, d=8, seed=seed)
    X, y = make_data(n, SHAPE, n_classes, seed=seed, encoder=encoder)
    probe = LinearProbe(encoder, device="cpu").fit(X[:200], y[:200])
    clf = probe.to_torch().eval()
    known = np.isin(y[200:], probe.classes_)  # rare classes may miss the training half
    X_test = torch.from_numpy(X[200:][known])
    y_idx = torch.from_numpy(probe.label_indices(y[200:][known]))
    return clf, X_test, y_idx


def exact_robust(clf, X, y, eps):
    """Closed-form robust accuracy of a linear classifier on the L-inf ball cut to [0, 1]."""
    M = (clf.linear.weight @ clf.encoder.lin.weight).double()
    c = (clf.linear.weight @ clf.encoder.lin.bias + clf.linear.bias).double()
    x = X.flatten(1).double()
    robust = torch.ones(len(x), dtype=torch.bool)
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    for j in range(M.shape[0]):
        w = M[y] - M[j]  # (N, D): margin of true class y over class j
        worst = torch.where(w > 0, lower, upper)
        margin = (w * worst).sum(1) + c[y] - c[j]
        robust &= (margin > 0) | (y == j)
    return robust.numpy()


@pytest.mark.parametrize("n_classes", [2, 7])
@pytest.mark.parametrize("eps", [0.01, 0.03])
def test_pgd_matches_exact_linear_oracle(n_classes, eps):
    clf, X, y = linear_setup(n_classes)
    exact = exact_robust(clf, X, y, eps).mean()
    pgd = pgd_robust_mask(clf, X, y, eps, steps=50, device="cpu").mean()
    assert 0.05 < exact < 0.95, "the oracle case must be non-trivial"
    assert pgd >= exact - 1e-9  # no attack beats the exact worst case
    assert pgd - exact <= 0.01  # within one point


def test_pgd_postconditions_and_zero_eps():
    clf, X, y = linear_setup(7)
    x_adv, broken = pgd_linf(clf, X, y, eps=0.05, steps=10, loss="margin")
    assert float((x_adv - X).abs().max()) <= 0.05 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.requires_grad
    with torch.no_grad():
        clean = (clf(X).argmax(1) == y).numpy()
    assert np.array_equal(pgd_robust_mask(clf, X, y, 0.0, device="cpu"), clean)


def test_accuracy_non_increasing_in_eps():
    clf, X, y = linear_setup(7)
    accs = [pgd_robust_mask(clf, X, y, e, steps=20, device="cpu", seed=1).mean() for e in (0, 0.01, 0.02, 0.05, 0.2)]
    assert all(a >= b for a, b in zip(accs, accs[1:]))
    assert accs[-1] < 0.05  # a large radius breaks (nearly) everything: no gradient masking


def test_pgd_breaks_an_undefended_conv_model_and_leaves_it_untouched():
    from pythae_avae.nets import ColorMNISTConvEncoder

    torch.manual_seed(0)
    encoder = ColorMNISTConvEncoder(8)
    encoder.train()
    X = torch.rand(200, 3, 28, 28)
    with torch.no_grad():
        encoder.eval()
        y = (encoder(X).embedding[:, 0] > encoder(X).embedding[:, 0].median()).long().numpy()
        encoder.train()
    probe = LinearProbe(encoder, device="cpu").fit(X.numpy(), y)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    clf = probe.to_torch()
    labels = torch.from_numpy(probe.label_indices(y))
    clean = pgd_robust_mask(clf, X, labels, 0.0, device="cpu").mean()
    adv = pgd_robust_mask(clf, X, labels, 0.1, steps=20, device="cpu").mean()
    assert clean > 0.8 and adv < 0.2 * clean
    assert encoder.training  # mode restored
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    assert all(p.grad is None for p in encoder.parameters())


def test_bad_eps_and_loss():
    clf, X, y = linear_setup(3, n=220)
    nan = X.clone()
    nan[0, 0, 0, 0] = float("nan")  # its logits' argmax would be class 0: counted robust for class 0
    with pytest.raises(ValueError, match=r"x must be a non-empty float tensor of pixels in \[0, 1\]"):
        pgd_linf(clf, nan, y, eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        pgd_robust_mask(clf, X, y, -0.1)
    with pytest.raises(ValueError, match="loss"):
        pgd_robust_mask(clf, X, y, 0.1, losses=("hinge",))
    for no_loss in ((), "ce"):  # no attack at all would report every point, misclassified ones too, robust
        with pytest.raises(ValueError, match=r"losses must be a non-empty sequence of \('ce', 'margin'\)"):
            pgd_robust_mask(clf, X, y, 0.1, losses=no_loss)


def test_autoattack_configuration_by_class_count():
    assert autoattack_config(10) == ("standard", None, 9)
    assert autoattack_config(7) == ("standard", None, 6)
    assert autoattack_config(2)[1] == ["apgd-ce", "fab", "square"]
    assert "apgd-dlr" in autoattack_config(3)[1]
    with pytest.raises(ValueError):
        autoattack_config(1)


@pytest.mark.parametrize("n_classes", [10, 7, 2])
def test_autoattack_runs_where_points_survive_and_is_no_weaker_than_pgd(n_classes):
    clf, X, y = linear_setup(n_classes, n=260)
    X, y = X[:40], y[:40]
    eps = 0.005  # small: some points survive APGD-CE, so the later attacks really run
    pgd = pgd_robust_mask(clf, X, y, eps, steps=50, device="cpu")
    aa = autoattack_robust_mask(clf, X, y, eps, n_classes=int(clf.linear.out_features), device="cpu")
    exact = exact_robust(clf, X, y, eps)
    assert 0 < aa.sum() < len(aa)
    assert aa.mean() <= pgd.mean() + 0.05
    # on a linear model AutoAttack breaks every point the closed form can break, no more
    # (a no-op attack would leave the clean accuracy, 2.5 to 15 points above)
    np.testing.assert_array_equal(aa, exact)


def test_autoattack_counts_a_point_robust_only_if_its_own_verdict_agrees(monkeypatch):
    # a point AutoAttack reports broken counts as broken even where our re-run of the model
    # classifies its adversarial image correctly (batch-dependent GPU kernels can flip it)
    import types

    import pyautoattack

    clf, X, y = linear_setup(7, n=240)
    X, y = X[:10], y[:10]

    class Reports(types.SimpleNamespace):
        def __init__(self, model, **kwargs):
            part = types.SimpleNamespace
            super().__init__(apgd_targeted=part(), fab=part(), apgd=part(), square=part())

        def run_standard_evaluation(self, x, labels, batch_size):
            verdict = labels.clone()
            verdict[3] = 1 - labels[3].clamp(max=1)  # "broken", though x is returned unchanged
            return x.clone(), verdict

    monkeypatch.setattr(pyautoattack, "AutoAttack", Reports)
    log = logging.getLogger("auto-attack")
    monkeypatch.setattr(log, "level", logging.WARNING)
    robust = autoattack_robust_mask(clf, X, y, 0.1, device="cpu", progress=True)
    assert log.level == logging.WARNING and not log.handlers  # progress=True left no trace
    with torch.no_grad():
        clean = (clf(X).argmax(1) == y).numpy()
    assert clean[3] and not robust[3]
    np.testing.assert_array_equal(np.delete(robust, 3), np.delete(clean, 3))


def test_autoattack_s_reliability_checks_are_warned_about_and_handed_back():
    # probabilities instead of logits: one of AutoAttack's own checks, logged (not warned) by it
    clf, X, y = linear_setup(7, n=240)
    probabilities = torch.nn.Sequential(clf, torch.nn.Softmax(dim=1))
    log = logging.getLogger("auto-attack")
    level = log.level
    log.setLevel(logging.ERROR)  # a caller who silenced AutoAttack still hears its checks here
    root = RootRecords()
    flags = []
    try:
        with pytest.warns(RuntimeWarning, match=r"AutoAttack's checks flagged its evaluation at eps=0.01: it seems "
                                                 r"that the output is a probability distribution"):
            autoattack_robust_mask(probabilities, X[:8], y[:8], 0.01, attacks=["apgd-ce"], device="cpu", flags=flags)
        assert log.level == logging.ERROR and not log.handlers and log.propagate
    finally:
        log.setLevel(level)
        root.close()
    assert any("probability distribution" in message for message in flags)
    assert root.of("auto-attack") == []  # not on the caller's handlers: the logger is silenced there
    quiet = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        autoattack_robust_mask(clf, X[:8], y[:8], 0.01, attacks=["apgd-ce"], device="cpu", flags=quiet)
    assert quiet == []


class RootRecords(logging.Handler):
    """Records what reaches the root logger's handlers, as a caller's logging setup would."""

    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.records = []
        logging.getLogger().addHandler(self)

    def emit(self, record):
        self.records.append(record)

    def of(self, name):
        return [(r.levelno, r.getMessage()) for r in self.records if r.name == name]

    def close(self):
        logging.getLogger().removeHandler(self)
        super().close()


def test_only_reliability_checks_are_flags_and_each_once(monkeypatch):
    # a 3-class list with apgd-dlr always gets the class-count notice: not a sign of masking;
    # APGD checks gradients once per batch, restart and target, with each batch's count: one flag
    import types

    import pyautoattack

    clf, X, y = linear_setup(7, n=240)

    class Logs(types.SimpleNamespace):
        def __init__(self, model, **kwargs):
            part = types.SimpleNamespace
            super().__init__(apgd_targeted=part(), fab=part(), apgd=part(), square=part())

        def run_standard_evaluation(self, x, labels, batch_size):
            log = logging.getLogger("auto-attack")
            log.warning("with only 3 classes it is not possible to use the targeted DLR loss!")
            log.debug("apgd-ce - 1/1 - 0 out of 4 successfully perturbed")
            for count in (2, 2, 13, 2):
                log.warning(f"there are {count} points with zero gradient! This might lead to unreliable evaluation")
            return x.clone(), labels.clone()

    monkeypatch.setattr(pyautoattack, "AutoAttack", Logs)
    monkeypatch.setattr(logging.getLogger("auto-attack"), "level", logging.WARNING)
    for progress in (False, True):  # True lowers the logger to DEBUG for its own console handler
        flags = []
        root = RootRecords()
        try:
            with pytest.warns(RuntimeWarning, match="zero gradient") as caught:
                autoattack_robust_mask(clf, X[:4], y[:4], 0.1, device="cpu", flags=flags, progress=progress)
        finally:
            root.close()
        assert flags == ["there are 2 points with zero gradient! This might lead to unreliable evaluation (also "
                         "reported with 13)"]
        assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
        # the caller's handlers hear AutoAttack's warnings as before, and not its DEBUG lines
        assert [level for level, _ in root.of("auto-attack")] == [logging.WARNING] * 5
    # where no logging is set up they stay off stderr (logging's last resort), as before
    last_resort = RootRecords()
    last_resort.close()  # not on the root logger: in logging.lastResort's place
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging, "lastResort", last_resort)
    with pytest.warns(RuntimeWarning, match="zero gradient"):
        autoattack_robust_mask(clf, X[:4], y[:4], 0.1, device="cpu")
    assert last_resort.records == []

    def fails(self, x, labels, batch_size):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Logs, "run_standard_evaluation", fails)
    log = logging.getLogger("auto-attack")
    with pytest.raises(RuntimeError, match="out of memory"):
        autoattack_robust_mask(clf, X[:4], y[:4], 0.1, device="cpu", progress=True)
    assert (log.level, log.propagate, log.handlers) == (logging.WARNING, True, [])  # left as found


class WrongOnce(torch.nn.Module):
    """Two logits favouring class 0, flipped on the ``wrong_at``-th forward pass only: a point
    broken by one iterate of one restart, which later iterates and restarts would not show."""

    def __init__(self, wrong_at):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.01, -0.01]))
        self.wrong_at, self.calls = wrong_at, 0

    def forward(self, x):
        self.calls += 1
        logits = 1 + x.flatten(1).sum(1, keepdim=True) * self.w
        return -logits if self.calls == self.wrong_at else logits


@pytest.mark.parametrize("restarts, wrong_at, broken", [
    (1, 3, True),  # pass 1: the clean check; 2: the random start; 3: the first step's iterate
    (1, 6, False),  # one restart of 2 steps makes passes 2-4: pass 6 never comes
    (2, 6, True),  # the second restart's first step
])
def test_pgd_keeps_any_iterate_of_any_restart_that_breaks_the_point(restarts, wrong_at, broken):
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, dtype=torch.long)
    model = WrongOnce(wrong_at)
    x_adv, found = pgd_linf(model, x, y, eps=0.1, steps=2, restarts=restarts,
                            generator=torch.Generator().manual_seed(0))
    assert bool(found[0]) is broken
    assert float((x_adv - x).abs().max()) > 0 if broken else torch.equal(x_adv, x)


def test_a_broken_point_classified_back_when_re_run_is_warned_about_not_fatal():
    # a boundary point under non-deterministic kernels: counted broken (as AutoAttack's are), the
    # evaluation goes on; leaving the threat model stays an error
    from pythae_avae.evaluation.attacks import _verify

    clf, X, y = linear_setup(3, n=220)
    with torch.no_grad():
        right = clf(X).argmax(1) == y
    broken = right.clone()  # claims every correctly classified clean point broken
    with pytest.warns(RuntimeWarning, match=rf"{int(right.sum())} adversarial point\(s\) PGD found misclassified"):
        _verify(clf, X, y, X, broken, eps=0.1)
    with pytest.raises(RuntimeError, match="threat model"):
        _verify(clf, X, y, (X + 0.2).clamp(max=1), torch.zeros_like(broken), eps=0.1)


def test_autoattack_reads_the_class_count_from_the_model():
    clf, X, y = linear_setup(7, n=240)
    X, y = X[:10], y[:10]
    with torch.no_grad():
        clean = (clf(X).argmax(1) == y).numpy()
    np.testing.assert_array_equal(autoattack_robust_mask(clf, X, y, 0.0, device="cpu"), clean)
    k = int(clf.linear.out_features)  # the classes the probe saw (rare ones may be missing)
    # more classes than logits would leave targets the model lacks: a crash inside AutoAttack
    with pytest.raises(ValueError, match=f"n_classes must be the model's number of logits, {k}, got 10"):
        autoattack_robust_mask(clf, X, y, 0.1, n_classes=10, device="cpu")


def test_autoattack_targeted_override_on_two_classes_leaves_the_global_generator_alone():
    clf, X, y = linear_setup(2, n=260)
    X, y = X[:20], y[:20]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    # 'fab-t' on 2 classes targets the other class (9 targets crashed); AutoAttack seeds
    # torch's global generator with its own seed, which must not leak to the caller's draws
    aa = autoattack_robust_mask(clf, X, y, 0.005, attacks=["fab-t"], device="cpu", seed=5)
    assert torch.equal(torch.rand(3), expected)
    assert aa.sum() >= exact_robust(clf, X, y, 0.005).sum()  # no attack beats the exact worst case
    with pytest.raises(ValueError, match=r"attacks \['apgd-t'\] use the DLR loss, which needs at least 4 classes; "
                                         r"this model has 2"):
        autoattack_robust_mask(clf, X, y, 0.005, attacks=["apgd-ce", "apgd-t"], device="cpu")


def test_attacks_run_where_the_model_is_and_cast_their_inputs(monkeypatch):
    clf, X, y = linear_setup(7, n=240)
    expected = pgd_robust_mask(clf, X, y, 0.02, steps=10, device="cpu")
    # the default device is the model's, not "cuda whenever a GPU exists" (which moved the
    # images away from a CPU model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    got = pgd_robust_mask(clf, X.double(), y.int(), 0.02, steps=10)
    np.testing.assert_array_equal(got, expected)
