"""streamtopo.compat.collapse_skill against seed 000's sample code, transcribed below where it
runs (the one change: ripser's result key is "dgms"; the skill's "diagrams" raises KeyError)."""

from __future__ import annotations

import numpy as np
import pytest
import ripser
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial.distance import pdist, squareform

import streamtopo as st
from streamtopo.compat import collapse_skill as cs
from streamtopo.errors import InputError, InputTypeError

torch = pytest.importorskip("torch")  # CI installs torch and fails on any skip


# ------------------------------------------------ seed 000, transcribed ("dgms" key fixed)
def seed_compute_persistence(embeddings, max_dim=1, threshold=None):
    dist_matrix = squareform(pdist(embeddings, metric="euclidean"))
    if threshold is not None:
        dist_matrix = np.minimum(dist_matrix, threshold)
    return ripser.ripser(dist_matrix, maxdim=max_dim, distance_matrix=True)["dgms"]


def seed_persistence_lifetime(diagram, dim=1):
    if dim >= len(diagram) or len(diagram[dim]) == 0:
        return np.array([])
    births = diagram[dim][:, 0]
    deaths = diagram[dim][:, 1]
    finite = np.isfinite(deaths)
    return deaths[finite] - births[finite]


def seed_normalize_component(value, ref_min=0.0, ref_max=10.0):
    return np.clip((value - ref_min) / (ref_max - ref_min + 1e-10), 0, 1)


def seed_compute_collapse_index(embeddings, labels=None):
    ci_components = {}
    cov = np.cov(embeddings.T)
    eigenvalues = np.linalg.eigvalsh(cov)
    eigenvalues = eigenvalues[eigenvalues > 0]
    anisotropy = eigenvalues[-1] / (eigenvalues[0] + 1e-10)
    ci_components["anisotropy"] = np.log1p(anisotropy)
    eigenvalues_norm = eigenvalues / eigenvalues.sum()
    effective_dim = 1.0 / (eigenvalues_norm**2).sum()
    max_dim = len(eigenvalues)
    ci_components["dim_ratio"] = 1.0 - (effective_dim / max_dim)
    diagrams = seed_compute_persistence(embeddings[: min(500, len(embeddings))])
    if len(diagrams) > 1 and len(diagrams[1]) > 0:
        lifetimes = seed_persistence_lifetime(diagrams, dim=1)
        if len(lifetimes) > 0:
            total = lifetimes.sum()
            if total > 0:
                probs = lifetimes / total
                ci_components["persistence_entropy"] = -(probs * np.log(probs + 1e-10)).sum()
    if labels is not None:
        unique_labels = np.unique(labels)
        if len(unique_labels) > 1:
            overall_mean = embeddings.mean(axis=0)
            sw = 0
            sb = 0
            for lab in unique_labels:
                mask = labels == lab
                class_mean = embeddings[mask].mean(axis=0)
                sw += np.sum((embeddings[mask] - class_mean) ** 2)
                sb += mask.sum() * np.sum((class_mean - overall_mean) ** 2)
            if sw > 0:
                ci_components["fisher_ratio"] = 1.0 / (1.0 + sb / sw)
    weights = {"anisotropy": 0.3, "dim_ratio": 0.3, "persistence_entropy": 0.2, "fisher_ratio": 0.2}
    ci = 0.0
    for key, weight in weights.items():
        if key in ci_components:
            ci += weight * seed_normalize_component(ci_components[key])
    return ci, ci_components


class SeedCollapseRule:
    """The skill's CollapseMonitor.check after the embeddings are taken, and get_report."""

    def __init__(self, check_every=5, threshold=0.7):
        self.check_every, self.threshold = check_every, threshold
        self.history, self.is_collapsing, self.collapse_epoch = [], False, None

    def check(self, embeddings, labels, epoch):
        if epoch % self.check_every != 0:
            return None
        ci, components = seed_compute_collapse_index(embeddings, labels)
        self.history.append({"epoch": epoch, "collapse_index": ci, "components": components})
        if len(self.history) >= 3:
            recent = [h["collapse_index"] for h in self.history[-3:]]
            if recent[-1] > self.threshold and recent[-1] > recent[-2]:
                self.is_collapsing = True
                self.collapse_epoch = epoch
        return ci

    def get_report(self):
        if not self.history:
            return "No monitoring data yet."
        report = "## Collapse Monitor Report\n\n"
        report += "| Epoch | Collapse Index | Status |\n"
        report += "|-------|---------------|--------|\n"
        for h in self.history:
            status = "⚠️ COLLAPSE" if h["collapse_index"] > self.threshold else "✅ OK"
            report += f"| {h['epoch']} | {h['collapse_index']:.4f} | {status} |\n"
        return report


# ---------------------------------------------------------------------------------- tests
def _cloud(seed, n=120, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.2, 2.0, size=d)
    X[7] = X[3]  # a duplicate point: a zero-length H0 bar ripser leaves out
    return X


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [None, 1.0, 2.5])
def test_compute_persistence_matches_the_skill(seed, threshold):
    X = _cloud(seed)
    got = cs.compute_persistence(X, max_dim=1, threshold=threshold)
    want = seed_compute_persistence(X, max_dim=1, threshold=threshold)
    assert len(got) == len(want) == 2
    assert got[0].shape == want[0].shape and np.isinf(got[0][-1, 1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)  # ripser holds float32
    order = lambda d: d[np.lexsort((d[:, 1], d[:, 0]))]  # noqa: E731
    np.testing.assert_allclose(order(got[1]), order(want[1]), rtol=1e-6)
    assert len(cs.compute_persistence(X, max_dim=0)) == 1


def test_persistence_lifetime_and_normalize_component_are_the_skills():
    X = _cloud(4)
    dgms = seed_compute_persistence(X)
    for dim in (0, 1, 2):
        np.testing.assert_array_equal(
            cs.persistence_lifetime(dgms, dim), seed_persistence_lifetime(dgms, dim)
        )
    assert cs.persistence_lifetime([np.zeros((0, 2))], 0).shape == (0,)
    for v in (-1.0, 0.0, 2.5, 9.99, 28.0, np.array([1.0, 20.0])):
        np.testing.assert_array_equal(cs.normalize_component(v), seed_normalize_component(v))


@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_compute_collapse_index_matches_the_skill(seed, with_labels):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 600) if with_labels else None
    X = rng.normal(size=(600, 12)) * np.geomspace(1, 0.01, 12)
    if with_labels:
        X += 2.0 * np.eye(4, 12)[labels]
    ci, comps = cs.compute_collapse_index(X, labels)
    ci_s, comps_s = seed_compute_collapse_index(X, labels)
    assert ci == pytest.approx(float(ci_s), rel=1e-6)
    assert set(comps) == set(comps_s)
    for k in comps:
        assert comps[k] == pytest.approx(float(comps_s[k]), rel=1e-6)
    assert set(comps) <= set(cs.SEED_COMPONENTS)


def test_morse_monitor_h0_is_exact_and_incremental_h1_exact():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    mon = cs.MorseHomologyMonitor(scale=0.5, max_dim=1)
    mon.initialize(X)
    old = X
    for _ in range(6):
        new = old.copy()
        moved = rng.choice(80, size=4, replace=False)
        new[moved] += 0.3 * rng.normal(size=(4, 3))
        new[rng.choice(80, size=5)] += 0.002  # below the skill's 0.01 change threshold
        mon.update(new, old)
        old = new
        dgms = mon.birth_death_pairs
        np.testing.assert_array_equal(dgms[0][:, 1], st.h0_diagram(new)[:, 1])  # bitwise
        np.testing.assert_array_equal(dgms[1], st.h1_diagram(new, max_points=None))
        assert set(np.flatnonzero(mon.changed_)) == set(moved)
        # the pairing: each matched vertex is killed by a tree edge within the scale
        D = squareform(pdist(new))
        mst = minimum_spanning_tree(D).toarray()
        tree = {(min(i, j), max(i, j)) for i, j in zip(*np.nonzero(mst), strict=True)}
        for v, u in mon.current_matching.items():
            assert (min(u, v), max(u, v)) in tree and D[u, v] <= 0.5
        beta0 = connected_components((D <= 0.5) & (D > 0) | np.eye(80, dtype=bool))[0]
        assert len(mon.critical_cells) == beta0
        assert mon.critical_cells | set(mon.current_matching) == set(range(80))
        for v in mon.current_matching:  # acyclic: following the matching ends at a root
            seen = set()
            while v in mon.current_matching:
                assert v not in seen
                seen.add(v)
                v = mon.current_matching[v]
            assert v in mon.critical_cells


def test_morse_monitor_errors():
    mon = cs.MorseHomologyMonitor()
    with pytest.raises(InputError, match="initialize"):
        mon.update(np.zeros((3, 2)), np.zeros((3, 2)))
    mon.initialize(np.eye(3))
    with pytest.raises(InputError, match="shape"):
        mon.update(np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(InputError, match="max_dim"):
        cs.MorseHomologyMonitor(max_dim=2)
    assert mon.birth_death_pairs[0].shape == (3, 2)


def _collapsing_embeddings(rng, epoch, n=200, d=8):
    """Anisotropy grows with the epoch (one axis shrinks geometrically)."""
    scale = np.ones(d)
    scale[1:] = 10.0 ** (-epoch / 5)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, d)) * scale + 0.1 * np.eye(3, d)[y], y


def test_collapse_monitor_rule_history_and_report_match_the_skill(capsys):
    # CI of the skill's formula stays below 0.55, so its 0.7 threshold can never fire: use 0.35
    mon, twin = cs.CollapseMonitor(check_every=2, threshold=0.35), SeedCollapseRule(2, 0.35)
    rng = np.random.default_rng(0)
    for epoch in range(16):
        X, y = _collapsing_embeddings(rng, epoch)
        a, b = mon.check_embeddings(X, y, epoch), twin.check(X, y, epoch)
        assert (a is None) == (b is None)
        if b is not None:
            assert a == pytest.approx(float(b), rel=1e-6)
        assert mon.is_collapsing == twin.is_collapsing
        assert mon.collapse_epoch == twin.collapse_epoch
    assert twin.is_collapsing  # the stream reaches the rule
    assert [h["epoch"] for h in mon.history] == [h["epoch"] for h in twin.history]
    assert set(mon.history[0]) == {"epoch", "collapse_index", "components"}
    assert mon.get_report() == twin.get_report()
    assert "COLLAPSE DETECTED at epoch" in capsys.readouterr().out


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.5))
        self.head = torch.nn.Linear(6, 3)

    def get_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def test_collapse_monitor_check_with_a_model_and_dataloader():
    torch.manual_seed(0)
    model = TinyNet()
    ds = torch.utils.data.TensorDataset(torch.randn(90, 4), torch.randint(0, 3, (90,)))
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    emb, lab = cs.get_embeddings_snapshot(model, loader, "cpu")
    assert emb.shape == (90, 6) and lab.shape == (90,) and model.training  # mode restored
    mon = cs.CollapseMonitor(check_every=5, threshold=0.7)
    assert mon.check(model, loader, 3, "cpu") is None
    ci = mon.check(model, loader, 5, "cpu")
    assert 0.0 <= ci <= 0.55 and len(mon.history) == 1 and not mon.is_collapsing
    assert "| 5 | " in mon.get_report() and "✅ OK" in mon.get_report()
    assert isinstance(mon.morse_monitor, cs.MorseHomologyMonitor)


def test_collapse_skill_errors_name_the_argument():
    loader = [(torch.randn(4, 4), torch.zeros(4))]
    with pytest.raises(InputTypeError, match="get_features"):
        cs.get_embeddings_snapshot(torch.nn.Linear(4, 2), loader, "cpu")
    with pytest.raises(InputTypeError, match="epoch"):
        cs.CollapseMonitor().check(TinyNet(), loader, 2.0, "cpu")
    with pytest.raises(InputError, match="max_dim"):
        cs.compute_persistence(np.eye(3), max_dim=2)
    with pytest.raises(InputError, match="threshold"):
        cs.compute_persistence(np.eye(3), threshold=-1.0)
    with pytest.raises(InputError, match="dim"):
        cs.persistence_lifetime([np.zeros((1, 2))], dim=-1)
    with pytest.raises(InputError, match="check_every"):
        cs.CollapseMonitor(check_every=0)
