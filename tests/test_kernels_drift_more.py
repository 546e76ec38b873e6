"""Exact KS p-values, Wasserstein, Jensen-Shannon, chi-square, sketches and the report,
each against an independent reference (SciPy), for many seeds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance as sd
import scipy.stats as st

from engine.kernels.drift import (
    chi2,
    jensen_shannon,
    jensen_shannon_counts,
    ks_2samp,
    psi,
    wasserstein,
)
from engine.kernels.report import report
from engine.kernels.sketch import CategoricalSketch, NumericSketch, drift_vs_sketch
from engine.kernels.special import chi2_sf


def _pair(seed: int, n_max: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=int(rng.integers(1, n_max)))
    b = rng.normal(rng.uniform(-0.5, 0.5), 1.0, size=int(rng.integers(1, n_max)))
    if seed % 2:
        a, b = a.round(1), b.round(1)
    return a, b


def test_ks_exact_pvalue_matches_scipy(seed: int) -> None:
    a, b = _pair(seed, 200)
    ours = ks_2samp(a, b, method="exact")
    ref = st.ks_2samp(a, b, method="exact")
    assert abs(ours.statistic - ref.statistic) <= 1e-12
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-14)


def test_wasserstein_matches_scipy(seed: int) -> None:
    a, b = _pair(seed)
    assert wasserstein(a, b) == pytest.approx(st.wasserstein_distance(a, b), rel=1e-12, abs=1e-14)


def test_jensen_shannon_matches_scipy(seed: int) -> None:
    a, b = _pair(seed)
    e = np.histogram_bin_edges([min(a.min(), b.min()), max(a.max(), b.max())], 20)
    ref = sd.jensenshannon(np.histogram(a, e)[0], np.histogram(b, e)[0], base=2)
    assert jensen_shannon(a, b, bins=20) == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_chi2_matches_scipy_with_unseen_categories(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k_ref, k_cur = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    a = rng.integers(0, k_ref, int(rng.integers(5, 500)))
    b = rng.integers(0, k_cur, int(rng.integers(5, 500)))
    ours = chi2(a, b)
    k = max(k_ref, k_cur)
    table = np.vstack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] == 1:
        assert ours == (0.0, 1.0, 0)
        return
    ref = st.chi2_contingency(table, correction=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert ours.dof == ref.dof


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 30, 200])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    for x in np.concatenate([np.linspace(0.01, 3 * dof + 50, 40), [0.0]]):
        assert chi2_sf(float(x), float(dof)) == pytest.approx(
            st.chi2.sf(x, dof), rel=1e-10, abs=1e-300
        )


def test_sketch_brackets_ks_and_psi_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=int(rng.integers(200, 20_000)))
    b = rng.normal(
        rng.uniform(-0.2, 0.2), rng.uniform(0.8, 1.2), size=int(rng.integers(200, 20_000))
    )
    if seed % 2:
        a, b = a.round(1), b.round(1)
    fine = [100, 1000][seed % 2]
    sk = NumericSketch.from_dict(NumericSketch.from_sample(a, fine, 10).to_dict())  # saved + loaded
    d = drift_vs_sketch(sk, b)
    exact = ks_2samp(a, b, method="asymp").statistic
    assert d.ks_low - 1e-12 <= exact <= d.ks_low + d.ks_err + 1e-12
    if seed % 2 == 0:  # continuous reference: the bound is 1/fine_bins (+1/n)
        assert d.ks_err <= 1 / fine + 1 / a.size + 1e-12
    assert d.psi == pytest.approx(psi(a, b, 10), rel=1e-12, abs=1e-15)


def test_sketch_binning_equals_searchsorted(seed: int) -> None:
    """The grid-table binning is exact: the same counts as a binary search, for values on,
    one ulp either side of, and far outside the edges, large offsets and NaN."""
    from engine.kernels.sketch import _bin_pass

    rng = np.random.default_rng(seed)
    offset = [0.0, 1e9, -3e5][seed % 3]
    a = offset + rng.standard_t(3, size=5000) * [1.0, 1e-3, 10.0][seed % 3]
    if seed % 4 == 1:
        a = a.round(2)
    sk = NumericSketch.from_sample(a, [100, 1000][seed % 2], 10)
    edges, (code, lo_v, scale) = sk.binning
    on = rng.choice(edges, 3000)
    b = np.concatenate(
        [
            offset + rng.standard_t(3, size=20_000) * [1.0, 1e-3, 10.0][seed % 3],
            on,
            np.nextafter(on, np.inf),
            np.nextafter(on, -np.inf),
            [np.nan, edges[0] - 1e6, edges[-1] + 1e6],
        ]
    )
    rng.shuffle(b)
    inner, atom, nan = _bin_pass(b, edges, code, lo_v, scale, 3)
    x = b[~np.isnan(b)]
    i = np.searchsorted(edges, x, side="left")
    is_atom = (i < edges.size) & (edges[np.minimum(i, edges.size - 1)] == x)
    k = edges.size + 1
    np.testing.assert_array_equal(inner, np.bincount(i[~is_atom], minlength=k))
    np.testing.assert_array_equal(atom, np.bincount(i[is_atom], minlength=k))
    assert nan == 1


def test_categorical_sketch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, 1000), rng.integers(0, 5, 800)
    r, js = CategoricalSketch.from_codes(a).drift(b)
    assert r == chi2(a, b)
    assert js == pytest.approx(
        jensen_shannon_counts(np.bincount(a, minlength=5), np.bincount(b, minlength=5))
    )


def test_report_methods_and_decisions() -> None:
    rng = np.random.default_rng(1)
    small = {"x": rng.normal(size=500), "c": rng.choice(np.array(["a", "b"], dtype=object), 500)}
    small_cur = {
        "x": rng.normal(0.5, 1, 500),
        "c": rng.choice(np.array(["a", "b"], dtype=object), 500),
    }
    r = {x.column: x for x in report(small, small_cur)}
    assert r["x"].method == "ks" and r["x"].drifted
    assert r["x"].value == pytest.approx(ks_2samp(small["x"], small_cur["x"], "asymp").pvalue)
    assert r["c"].method == "chi2"
    big = {
        "x": rng.normal(size=5000),
        "c": rng.choice(np.array(["a", "b", None], dtype=object), 5000),
    }
    big_cur = {
        "x": rng.normal(size=5000),
        "c": rng.choice(np.array(["a", "b", "z"], dtype=object), 5000),
    }
    r = {x.column: x for x in report(big, big_cur)}
    assert r["x"].method == "wasserstein" and not r["x"].drifted
    assert r["x"].value == pytest.approx(
        st.wasserstein_distance(big["x"], big_cur["x"]) / np.std(big["x"]), rel=1e-9
    )
    assert r["c"].method == "jensen_shannon" and r["c"].drifted  # 'z' never seen before
    assert r["c"].missing_ref > 1000


@pytest.mark.parametrize("how", ["bonferroni", "bh"])
def test_report_multiple_testing(how: str) -> None:
    rng = np.random.default_rng(3)
    ref = {f"x{i}": rng.normal(size=300) for i in range(8)}
    cur = {f"x{i}": rng.normal(0.15 * (i % 3), 1, 300) for i in range(8)}
    raw = np.array([x.value for x in report(ref, cur)])
    adj = np.array([x.value for x in report(ref, cur, correction=how)])  # type: ignore[arg-type]
    expected = (
        np.minimum(raw * raw.size, 1) if how == "bonferroni" else st.false_discovery_control(raw)
    )
    np.testing.assert_allclose(adj, expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_object_counts_equal_pandas_value_counts(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Identity counting (engine.kernels._objects) against pandas value_counts: shared and
    distinct objects holding equal strings, None and NaN, unseen categories on one side, and
    the fallback to hashing when the identity table would grow past its cap."""
    import pandas as pd

    from engine.kernels import _objects

    rng = np.random.default_rng(seed)
    labels = ["a", "b", "é", "", "zz", None, np.nan] + [
        f"v{i}" for i in range(rng.integers(1, 3000))
    ]
    pool = np.array(labels, dtype=object)
    a = rng.choice(pool, int(rng.integers(0, 5000)))
    b = rng.choice(pool[: max(3, pool.size // 2)], int(rng.integers(1, 5000)))
    if seed % 2:  # equal strings held by different objects
        b = np.array([v if not isinstance(v, str) else "".join(list(v)) for v in b], dtype=object)
    if seed % 3 == 0:
        monkeypatch.setattr(_objects, "MAX_IDENTITIES", 16)
    rc, cc, mr, mc = _objects.object_counts(a, b)
    both = pd.Series(np.concatenate([a, b]))
    cats = pd.unique(both.dropna())
    ra = pd.Series(a, dtype=object).value_counts().reindex(cats, fill_value=0).to_numpy()
    rb = pd.Series(b, dtype=object).value_counts().reindex(cats, fill_value=0).to_numpy()
    np.testing.assert_array_equal(rc, ra)
    np.testing.assert_array_equal(cc, rb)
    assert mr == int(pd.isna(pd.Series(a, dtype=object)).sum())
    assert mc == int(pd.isna(pd.Series(b, dtype=object)).sum())
    vals, counts, missing = _objects.value_counts(b)  # one side, with its values
    want = pd.Series(b, dtype=object).value_counts(dropna=True)
    assert vals == pd.unique(pd.Series(b, dtype=object).dropna()).tolist()
    np.testing.assert_array_equal(counts, want.reindex(vals).to_numpy())
    assert missing == mc


def test_a_coarse_sketch_holds_no_sample_value_and_still_brackets_ks(seed: int) -> None:
    """The sketch a saved profile holds (edges rounded to 4 significant digits, counts
    exact at them): KS still bracketed (scipy), PSI equal to PSI over its own edges counted
    by numpy, and no edge is a value of the sample (unless that value has 4 digits)."""
    from engine.kernels.drift import psi_from_counts

    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, 300.0, size=int(rng.integers(200, 20_000)))
    b = rng.gamma(2.1, 290.0, size=int(rng.integers(200, 20_000)))
    sk = NumericSketch.from_dict(NumericSketch.coarse(a, 1000, 10, 4).to_dict())
    d = drift_vs_sketch(sk, b)
    exact = ks_2samp(a, b, method="asymp").statistic
    assert d.ks_low - 1e-12 <= exact <= d.ks_low + d.ks_err + 1e-12
    pe = np.asarray(sk.psi_edges)
    ref = np.bincount(np.searchsorted(pe, a, side="left"), minlength=pe.size + 1)
    cur = np.bincount(np.searchsorted(pe, b, side="left"), minlength=pe.size + 1)
    want = psi_from_counts(ref, a.size, cur, b.size)
    assert d.psi == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert set(sk.psi_edges) <= set(sk.edges)
    assert not set(sk.edges) & {float(v) for v in a if float(f"{v:.4g}") != v}
