"""Fixed points, linear stability and thresholds (docs/model.md#odes, #findings and #pitfalls)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import linvae
from linvae import Params, schedules
from linvae.ode import jacobian, layout, min_gram_eigenvalue, pack, rhs
from linvae.stability import (
    FixedPoint,
    StabilityReport,
    Threshold,
    annealing_threshold,
    collapse_growth_rate,
    collapse_threshold,
    collapsed_state,
    convergence_time,
    fixed_points,
    latent_sector,
    noise_threshold,
    role_state,
    stability_report,
    stable_fixed_point,
    step_size_limit,
)
from linvae.states import overlap_state

DOC = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)  # docs/model.md#findings
SUPERFLUOUS = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2)
TWO = Params(M=2, M_star=2, rho=[3.0, 1.0], eta=1.0, beta=1.0, tau=0.5)
COLLAPSED = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=2.5, tau=0.5)


def _fd_jacobian(p: Params, y: np.ndarray, h: float = 1e-6) -> np.ndarray:
    n = y.size
    J = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        J[:, j] = (rhs(0.0, y + e, p) - rhs(0.0, y - e, p)) / (2 * h)
    return J


# ---------------------------------------------------------------------------------------
# collapse threshold
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rho", "eta", "tau"), [(1.0, 1.0, 0.05), (2.0, 0.5, 0.1),
                                                 (0.5, 2.0, 0.02)])
def test_collapse_threshold_is_rho_plus_eta_at_lam_zero(rho, eta, tau):
    thr = collapse_threshold(Params(rho=rho, eta=eta, tau=tau), 0)
    assert isinstance(thr, Threshold)
    assert abs(float(thr) - (rho + eta)) < 1e-6
    assert thr.predicted == rho + eta
    assert abs(thr.shift) < 1e-6


def test_collapse_threshold_three_factors_cascade():
    p = Params(M=3, M_star=3, rho=[3.0, 2.0, 1.0], eta=0.5, tau=0.1)
    for k in range(3):
        assert abs(float(collapse_threshold(p, k)) - (p.rho[k] + p.eta)) < 1e-6


def test_collapse_threshold_lam_shift():
    # the linearisation of (m, d) at the collapsed state gives Pe/(1+lam) - lam/Pe
    p = Params(rho=1.0, eta=1.0, tau=0.5, lam=0.1)
    thr = collapse_threshold(p, 0)
    pe = 2.0
    assert float(thr) == pytest.approx(pe / 1.1 - 0.1 / pe, abs=1e-8)
    assert thr.shift == pytest.approx(float(thr) - 2.0)
    assert thr.shift < -0.2


def test_documented_eigenvalue_sign_change_and_step_size_limit():
    """docs/model.md#findings: sign change between beta = 1.95 and 2.05 at tau = 0.05 and
    0.5; at tau = 1 unstable for every beta in [1.8, 2.2]."""
    for tau in (0.05, 0.5):
        p = Params(rho=1.0, eta=1.0, tau=tau)
        assert collapse_growth_rate(p.replace(beta=1.95)) > 0
        assert collapse_growth_rate(p.replace(beta=2.05)) < 0
        # the full Jacobian agrees for a single latent
        s = collapsed_state(p.replace(beta=2.05))
        assert np.linalg.eigvals(jacobian(p.replace(beta=2.05), s)).real.max() < 0
    p1 = Params(rho=1.0, eta=1.0, tau=1.0)
    for beta in np.linspace(1.8, 2.2, 9):
        pb = p1.replace(beta=float(beta))
        s = collapsed_state(pb)
        assert np.linalg.eigvals(jacobian(pb, s)).real.max() > 0
    # and at tau = 1 no fixed point at all is stable there
    for beta in (1.8, 2.0, 2.2):
        fps = fixed_points(p1.replace(beta=beta), integrate_starts=False)
        assert fps and not any(f.stable for f in fps)
    with pytest.warns(RuntimeWarning, match="step-size"):
        assert math.isnan(collapse_threshold(p1, 0, beta_max=3.0, n_scan=6))


def test_step_size_limit_brackets_documented_values():
    lim = step_size_limit(Params(rho=1.0, eta=1.0, beta=2.05, tau=0.1), rtol=1e-4)
    assert 0.5 < float(lim) < 1.0
    p = Params(rho=1.0, eta=1.0, beta=2.05)
    below = fixed_points(p.replace(tau=0.98 * float(lim)), integrate_starts=False)
    above = fixed_points(p.replace(tau=1.02 * float(lim)), integrate_starts=False)
    assert any(f.stable for f in below)
    assert not any(f.stable for f in above)


def test_noise_threshold_shifts_with_tau():
    # docs/model.md#findings: a superfluous latent collapses for beta > eta. That is the
    # tau -> 0 limit; at finite tau the noise-fitting state survives slightly above eta:
    # beta_c = eta + tau eta^3 / (2 (1 + eta^2)) + O(tau^2).
    for eta in (1.0, 0.5):
        thr = noise_threshold(Params(rho=1.0, eta=eta, tau=0.01))
        slope = eta**3 / (2 * (1 + eta**2))
        assert float(thr) - eta == pytest.approx(0.01 * slope, rel=0.02)
        assert thr.predicted == eta
    thr = noise_threshold(SUPERFLUOUS)
    assert float(thr) == pytest.approx(1.0509258, abs=1e-6)
    fp = stable_fixed_point(SUPERFLUOUS.replace(beta=1.03), integrate_starts=False)
    assert fp.kinds == ("learned", "noise")  # beta > eta, still fitting noise
    fp = stable_fixed_point(SUPERFLUOUS.replace(beta=1.07), integrate_starts=False)
    assert fp.kinds == ("learned", "collapsed")


def test_latent_sector_is_an_invariant_block_at_collapse():
    p = Params(M=3, M_star=2, rho=[2.0, 1.0], eta=0.5, beta=1.2, tau=0.2)
    for k in range(p.M):
        s = collapsed_state(p, latent=k)
        J = jacobian(p, s)
        idx = latent_sector(p, k)
        rest = np.setdiff1d(np.arange(J.shape[0]), idx)
        assert np.abs(J[np.ix_(idx, rest)]).max() < 1e-12
        sector_ev = np.linalg.eigvals(J[np.ix_(idx, idx)])
        full_ev = np.linalg.eigvals(J)
        for ev in sector_ev:  # the sector's eigenvalues are eigenvalues of J
            assert np.abs(full_ev - ev).min() < 1e-8


def test_collapsed_state_is_a_fixed_point():
    p = Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=1.5, tau=0.3, lam=0.05)
    s = collapsed_state(p, 1)
    assert np.abs(pack(rhs(0.0, s, p), p)).max() < 1e-10
    assert np.allclose(s["m"][1], 0) and np.allclose(s["D"][1], 1.0)
    assert abs(s["Q"][1, 1]) < 1e-12 and abs(s["E"][1, 1]) < 1e-12
    assert np.abs(s["m"][0]).max() > 0.1  # the other latent learns its factor


# ---------------------------------------------------------------------------------------
# fixed points
# ---------------------------------------------------------------------------------------
def test_documented_single_latent_fixed_point():
    fps = fixed_points(DOC)
    stable = [f for f in fps if f.stable]
    assert len(stable) == 1
    f = stable[0]
    assert round(float(f.state["Q"][0, 0]), 2) == 2.08
    assert round(float(f.state["m"][0, 0]), 2) == 1.32
    assert f.kinds == ("learned",) and f.factors == (0,)
    kinds = sorted(g.kinds[0] for g in fps)
    assert kinds == ["collapsed", "learned", "noise"]
    assert "stable" in repr(f) and "learned" in repr(f)
    assert "Q =" in f.summary()


def test_documented_superfluous_fixed_point():
    f = stable_fixed_point(SUPERFLUOUS)
    assert f.kinds == ("learned", "noise")
    assert round(float(f.state["Q"][1, 1]), 3) == 0.167
    assert round(float(f.state["R"][1, 1]), 3) == 0.150
    assert round(float(f.state["D"][1]), 3) == 0.844
    assert f.state["m"][1, 0] == 0.0 or abs(f.state["m"][1, 0]) < 1e-10
    assert f.min_gram_eigenvalue == pytest.approx(0.003, abs=5e-4)
    assert f.max_real < 0


@pytest.mark.parametrize("p", [DOC, SUPERFLUOUS, TWO, COLLAPSED,
                               Params(M=2, M_star=2, rho=1.0, eta=1.0, beta=0.5, tau=0.2),
                               Params(M=1, M_star=2, rho=[2.0, 1.0], beta=0.5, lam=0.1)],
                         ids=["doc", "superfluous", "two", "collapsed", "equal_rho", "M<M*"])
def test_every_fixed_point_is_a_physical_root_and_stability_is_consistent(p):
    fps = fixed_points(p, integrate_starts=False)
    assert fps
    assert sum(f.stable for f in fps) >= 1
    for f in fps:
        assert isinstance(f, FixedPoint)
        assert f.residual < 1e-10
        assert np.abs(pack(rhs(0.0, f.state, p), p)).max() < 1e-10
        assert float(min_gram_eigenvalue(f.state)) > -1e-8
        assert np.all(f.state["D"] > 0)
        ev = np.linalg.eigvals(jacobian(p, f.state))
        assert np.sort(ev.real)[::-1] == pytest.approx(f.eigenvalues.real, abs=1e-9)
        if f.stable:
            assert np.all(f.relevant_eigenvalues.real < 0)
            if f.n_symmetry == 0:
                assert np.all(ev.real < 0)
        for k, kind in zip(range(p.M), f.kinds, strict=True):
            if kind == "collapsed":
                assert abs(f.state["D"][k] - 1.0) < 1e-8
                assert max(abs(f.state[x][k, k]) for x in "QER") < 1e-6
            if kind == "noise":
                assert np.abs(f.state["m"][k]).max() < 1e-6
                assert f.state["Q"][k, k] > 0
    # no two reported fixed points are the same up to symmetry
    from linvae.stability.search import _equivalent

    for i in range(len(fps)):
        for j in range(i):
            assert not _equivalent(p, fps[i].state, fps[j].state)


def test_equal_rho_rotation_modes_are_not_instabilities():
    p = Params(M=2, M_star=2, rho=1.0, eta=1.0, beta=0.5, tau=0.2)
    f = stable_fixed_point(p, integrate_starts=False)
    assert f.n_symmetry == 1
    assert np.sort(np.abs(f.eigenvalues))[0] < 1e-9  # the rotation direction
    assert f.max_real < -1e-3


def test_symmetric_starts_are_deduplicated():
    fps = fixed_points(TWO, integrate_starts=False)
    f = next(g for g in fps if g.stable)
    s = {k: v.copy() for k, v in f.state.items()}
    # swap the latents and flip the sign of one: the same fixed point up to symmetry
    perm = [1, 0]
    t = {"m": -s["m"][perm], "d": -s["d"][perm], "D": s["D"][perm]}
    sg = np.array([-1.0, 1.0])
    for k in "QER":
        t[k] = sg[:, None] * s[k][np.ix_(perm, perm)] * sg[None, :]
    again = fixed_points(TWO, [t], default_starts=False)
    assert len(again) == 1
    assert np.allclose(again[0].state["m"], f.state["m"], atol=1e-8)  # canonical form
    assert again[0].state["m"][0, 0] > 0 and again[0].state["m"][1, 1] > 0


def test_jacobian_matches_central_differences_at_fixed_points():
    for p in (DOC, SUPERFLUOUS, TWO):
        for f in fixed_points(p, integrate_starts=False)[:3]:
            y = layout(p).pack(f.state)
            J = linvae.ode.jacobian(p, f.state)
            J_fd = _fd_jacobian(p, y)
            assert np.abs(J - J_fd).max() < 1e-6 * max(1.0, np.abs(J).max())


def test_role_state_and_validation():
    s = role_state(TWO, [1, "noise"])
    assert s["m"][0, 1] > 0 and s["m"][0, 0] == 0 and s["Q"][1, 1] > 0
    with pytest.raises(ValueError, match="roles"):
        role_state(TWO, [0])
    with pytest.raises(ValueError, match="roles\\[1\\]"):
        role_state(TWO, [0, "bogus"])
    with pytest.raises(ValueError, match="factor"):
        collapse_threshold(TWO, 2)
    with pytest.raises(ValueError, match="factor must be < M"):
        collapse_threshold(Params(M=1, M_star=2, rho=[2.0, 1.0]), 1)
    with pytest.raises(TypeError, match="factor"):
        collapse_threshold(TWO, 0.5)
    with pytest.raises(ValueError, match="factor"):
        collapse_threshold(TWO, -1)
    with pytest.raises(TypeError, match=r"p must be a linvae\.Params"):
        fixed_points({"M": 1})
    with pytest.raises(ValueError, match="delta"):
        convergence_time(DOC, delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        convergence_time(DOC, delta=-1e-3)
    with pytest.raises(ValueError, match="init"):
        convergence_time(DOC, init=2.0)
    with pytest.raises(ValueError, match="eig_tol"):
        fixed_points(DOC, eig_tol=0.0)
    with pytest.raises(ValueError, match="n_random"):
        fixed_points(DOC, n_random=-1)
    with pytest.raises(ValueError, match="step-size limit"):
        step_size_limit(Params(rho=1.0, eta=1.0, beta=2.0, tau=1.0))


# ---------------------------------------------------------------------------------------
# annealing
# ---------------------------------------------------------------------------------------
def test_documented_gamma_star():
    assert annealing_threshold(DOC) == pytest.approx(0.068, abs=5e-4)
    # a schedule's limit is used
    assert annealing_threshold(DOC.replace(beta=schedules.Tanh(0.5, 0.3))) == \
        pytest.approx(annealing_threshold(DOC), rel=1e-10)


def test_documented_convergence_times():
    """docs/model.md#findings: 61 (constant), 75 (gamma 0.05), 174 (0.02), 60 (0.1).

    They are reproduced from overlap_state(p, 0.01), the default start, i.e. overlaps of
    order N^-1/2 at N = 10^4 like the authors' random start; larger overlaps converge
    faster (e.g. 47 from overlap 0.5 at constant beta).
    """
    expected = {None: 61, 0.05: 75, 0.02: 174, 0.1: 60}
    for gamma, t_doc in expected.items():
        p = DOC if gamma is None else DOC.replace(beta=schedules.Tanh(0.5, gamma))
        assert convergence_time(p, 1e-3) == pytest.approx(t_doc, abs=1.0)
    assert convergence_time(DOC, 1e-3, init=0.5) < 50
    det = convergence_time(DOC, 1e-3, return_details=True)
    assert det["fixed_point"].stable
    assert det["eg_inf"] == pytest.approx(det["fixed_point"].eg)


def test_convergence_time_other_schedules_and_explicit_init():
    lin = DOC.replace(beta=schedules.Linear(0.5, t_warmup=100.0))
    t = convergence_time(lin, 1e-3)
    assert t > 90  # cannot settle before beta reaches beta_inf at t = 100
    # a cyclical schedule is at beta_inf in its hold phases and leaves it again: the last
    # ramp ends at t = 250, so the run must not stop at an earlier hold phase
    cyc = DOC.replace(beta=schedules.Cyclical(0.5, period=100.0, ratio=0.5, n_cycles=3))
    assert convergence_time(cyc, 1e-3) > 250
    init = {"m": [[0.5]], "d": [[0.5]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.25]],
            "D": [1.0]}
    assert convergence_time(DOC, 1e-3, init=init) == \
        pytest.approx(convergence_time(DOC, 1e-3, init=0.5), abs=1e-6)


def test_schedules_limits_and_roundtrip():
    for s in (schedules.Tanh(0.5, 0.1), schedules.Linear(0.5, 10.0),
              schedules.Sigmoid(0.5, 1.0, 5.0), schedules.Cyclical(0.5, 10.0, 0.5, 2)):
        assert s.limit() == 0.5
        assert float(s(1e4)) == pytest.approx(0.5)
        assert schedules.from_dict(s.to_dict()) == s
        assert np.all(np.asarray(s(np.linspace(0, 100, 50))) <= 0.5 + 1e-12)


# ---------------------------------------------------------------------------------------
# the stability report (what `linvae stability` prints and writes)
# ---------------------------------------------------------------------------------------
#: str(stability_report(DOC)), with the residuals (machine-dependent roundoff) masked: lines
#: under 120 characters, matrix rows aligned, and no superfluous latent (M = M*) mentioned
DOC_REPORT = """\
fixed points of the ODEs (3 found, up to symmetry) for
  Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5):
  FixedPoint(stable; latents: learned[f0]; eg=0.434, rate=0.7082, max Re(eig)=-0.1356, residual=*;
      beta=0.5, tau=0.5)
    m = [[1.3241]]
    d = [[0.5128]]
    Q = [[2.0821]]
    E = [[0.318]]
    R = [[0.7885]]
    D = [0.1936]
  FixedPoint(unstable; latents: noise; eg=1.88, rate=0.4138, max Re(eig)=0.2191, residual=*; \
beta=0.5, tau=0.5)
    m = [[0.]]
    d = [[0.]]
    Q = [[0.8803]]
    E = [[0.45]]
    R = [[0.6025]]
    D = [0.3622]
  FixedPoint(unstable; latents: collapsed; eg=1, rate=0, max Re(eig)=0.5, residual=*; beta=0.5, \
tau=0.5)
    m = [[0.]]
    d = [[0.]]
    Q = [[0.]]
    E = [[0.]]
    R = [[0.]]
    D = [1.]
thresholds (numerical; prediction of docs/model.md#findings in parentheses):
  collapse of factor 0: beta_c = 2  (rho_k + eta = 2)
  KL annealing: gamma* = -J_max/2 = 0.0678191"""


@pytest.fixture(scope="module")
def doc_report() -> StabilityReport:
    return stability_report(DOC)


@pytest.fixture(scope="module")
def superfluous_report() -> StabilityReport:
    return stability_report(DOC.replace(M=2))


def _masked(text: str) -> str:
    return re.sub(r"residual=[-+.0-9e]+", "residual=*", text)


def test_report_text_single_latent(doc_report: StabilityReport) -> None:
    assert _masked(str(doc_report)) == DOC_REPORT
    assert repr(doc_report) == (f"StabilityReport({DOC!r}; 3 fixed points, 1 stable; "
                                "beta_c = [2]; gamma* = 0.0678191)")
    # no superfluous latent: nothing said about one, though its threshold is at hand
    assert not doc_report.has_superfluous and "superfluous" not in str(doc_report)
    assert float(doc_report.noise) == pytest.approx(1.12872, abs=1e-5)


def test_report_dict_single_latent(doc_report: StabilityReport) -> None:
    d = doc_report.to_dict()
    assert d["params"] == repr(DOC)
    assert [f["stable"] for f in d["fixed_points"]] == [True, False, False]
    assert [f["summary"] for f in d["fixed_points"]] == [
        f.summary() for f in doc_report.fixed_points]
    assert d["fixed_points"][0]["eg"] == pytest.approx(0.434, abs=5e-4)
    thr = d["thresholds"]
    # tau_max: not asked for; noise: no superfluous latent (M = M*)
    assert list(thr) == ["collapse_0", "gamma_star"]
    assert thr["collapse_0"]["value"] == pytest.approx(2.0, abs=1e-6)
    assert thr["collapse_0"]["predicted"] == 2.0
    assert thr["gamma_star"]["value"] == pytest.approx(0.068, abs=5e-4)
    assert math.isnan(thr["gamma_star"]["predicted"])  # no closed form


def test_report_superfluous_latent(superfluous_report: StabilityReport,
                                   doc_report: StabilityReport) -> None:
    r = superfluous_report
    assert r.params.M == 2 and len(r.fixed_points) == 5
    assert [fp.stable for fp in r.fixed_points] == [True] + [False] * 4
    assert r.fixed_points[0].kinds == ("learned", "noise")
    lines = str(r).splitlines()
    assert lines[:2] == ["fixed points of the ODEs (5 found, up to symmetry) for",
                         f"  {r.params}:"]
    assert lines[2].startswith("  FixedPoint(stable; latents: learned[f0], noise; eg=1.314")
    assert max(map(len, lines)) < 120
    # every fixed point (one or two lines) with its six order parameters, M = 2 rows each
    # for m, d, Q, E, R, the second row aligned under the first
    heads = sum(ln.startswith("  FixedPoint(") for ln in lines)
    wrapped = sum(ln.startswith("      ") and not ln.startswith("       ") for ln in lines)
    assert heads == 5
    assert lines.index("thresholds (numerical; prediction of docs/model.md#findings in "
                       "parentheses):") == 2 + heads + wrapped + 5 * (5 * 2 + 1)
    for i, ln in enumerate(lines):
        if ln.startswith("    m = [["):
            assert lines[i + 1].startswith("         [") and not lines[i + 1].startswith(
                "          "), lines[i:i + 2]
    assert lines[-3:] == ["  collapse of factor 0: beta_c = 2  (rho_k + eta = 2)",
                          ("  superfluous latent stops fitting noise: beta = 1.12872  "
                           "(eta = 1)"),
                          f"  KL annealing: gamma* = -J_max/2 = {r.gamma_star:.6g}"]
    # the superfluous latent fits noise at the stable point, so the slowest mode is slower
    assert r.gamma_star == pytest.approx(-0.5 * r.fixed_points[0].max_real)
    assert r.gamma_star is not None and doc_report.gamma_star is not None
    assert r.gamma_star < doc_report.gamma_star
    assert list(r.to_dict()["thresholds"]) == ["collapse_0", "noise", "gamma_star"]


def test_report_factor_without_latent_and_no_stable_point() -> None:
    r = stability_report(Params(M=1, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.5, tau=0.1))
    assert "  collapse of factor 1: none, no latent of its own (M = 1)" in str(r)
    assert math.isnan(r.collapse[1]) and r.collapse[1].predicted == 2.0
    assert "collapse_1" not in r.to_dict()["thresholds"]
    # beyond the step-size limit no fixed point is stable: gamma* is undefined, and says why
    with pytest.warns(RuntimeWarning, match="not stable for any beta"):
        r = stability_report(DOC.replace(tau=5.0))
    assert r.gamma_star is None and r.gamma_star_error.startswith("no stable fixed point")
    # said in full, in lines under 120 characters
    assert "\n  KL annealing: gamma* undefined (" in str(r)
    assert f"KL annealing: gamma* undefined ({r.gamma_star_error})" in " ".join(str(r).split())
    assert max(map(len, str(r).splitlines())) < 120
    assert "gamma_star" not in r.to_dict()["thresholds"]
    assert "gamma* undefined" in repr(r)


def test_report_step_limit_and_json_round_trip() -> None:
    p = DOC.replace(tau=0.1)
    r = stability_report(p, step_limit=True)
    assert isinstance(r.tau_max, Threshold)
    assert str(r).endswith(f"\n  step-size stability limit: tau_max = {float(r.tau_max):.6g}")
    d = r.to_dict()
    assert d["thresholds"]["tau_max"]["value"] == float(r.tau_max)
    text = json.dumps(d, indent=2)
    back = json.loads(text)
    assert json.dumps(back, indent=2) == text  # NaN (no closed form) included
    assert back["fixed_points"] == d["fixed_points"]
    assert back["thresholds"]["collapse_0"] == d["thresholds"]["collapse_0"]
    assert math.isnan(back["thresholds"]["tau_max"]["predicted"])


# ---------------------------------------------------------------------------------------
# SGD stays at the stable fixed points
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [DOC, SUPERFLUOUS, COLLAPSED],
                         ids=["learned", "superfluous", "collapsed"])
def test_sgd_stays_near_stable_fixed_point(p):
    """SGD at N = 4000 from a state 5 % away from the fixed point (towards
    overlap_state(p, 0.5); a convex mix of two Gram matrices is physical) stays within
    the initial offset plus 5 N^-1/2 (1 + |value|) of it, entry by entry, for t <= 5.
    N^-1/2 = 0.016 is the size of the finite-N fluctuations (docs/model.md#odes)."""
    N = 4000
    f = stable_fixed_point(p, integrate_starts=False)
    o = overlap_state(p, 0.5)
    eps = 0.05
    init = {k: (1 - eps) * f.state[k] + eps * o[k] for k in f.state}
    ds = linvae.simulate(p, N=N, t_max=5.0, record_every=1.0, seeds=2, seed=3, init=init,
                         progress=False)
    assert not ds["diverged"].values.any()
    for k in ("m", "d", "Q", "E", "R", "D"):
        x = f.state[k]
        offset = np.abs(init[k] - x).max()
        tol = offset + 5 * N**-0.5 * (1 + np.abs(x))
        assert np.all(np.abs(ds[k].values - x) <= tol), k
        # and it relaxes towards the fixed point: the last record is closer than the start
        # (up to fluctuations)
        last = np.abs(ds[k].isel(t=-1).values - x).max()
        assert last <= offset + 3 * N**-0.5 * (1 + np.abs(x).max()), k
