"""The compiled ODEs against the NumPy oracle (tests/ode_oracle.py), and the grid calls.

What is checked, and to what tolerance:

* right-hand side and Jacobian equal the oracle's to 1e-12 (relative to the largest
  entry; measured about 6e-16) on random physical states, for several (M, M*), lam > 0
  and every built-in schedule kind; beta(t) equals the Python schedules to 1e-15;
* the compiled ports of RK45 and Radau take SciPy's steps: their recorded states equal
  solve_ivp's with the oracle right-hand side (same method and tolerances) to 1e-8
  (measured 1e-15 to 6e-10); SciPy's methods with the compiled callbacks equal them too;
* the default method "auto" at the default tolerances (rtol 1e-8, atol 1e-10) equals an
  accurate oracle solution (DOP853, rtol 1e-13) to 1e-8 absolute plus 2e-8 relative
  (measured: at most 1.6e-8 absolute, on an entry of size 0.58). The old default, SciPy's
  LSODA with the NumPy right-hand side, is off from that solution by up to 1.5e-7 at the
  same tolerances, so the two defaults are compared at rtol 1e-10, where both are
  accurate: there they agree to 1e-8;
* grid results equal the per-point results (the same compiled code: to rounding), and
  the steady states equal linvae.stable_fixed_point's fixed points to 1e-8.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import ClassVar

import numpy as np
import ode_oracle as oracle
import pytest
import xarray as xr
from numpy.typing import NDArray

from linvae import Params, observables, schedules, stability
from linvae.errors import IntegrationError
from linvae.ode import (
    COMPILED_METHODS,
    final_state,
    integrate,
    integrate_grid,
    jacobian,
    layout,
    min_gram_eigenvalue,
    rhs,
    steady_state_grid,
)
from linvae.stability import search
from linvae.states import overlap_state

OPS = ("m", "d", "Q", "E", "R", "D")
SCHEDULES = [0.6, schedules.Tanh(0.8, 0.3), schedules.Linear(1.1, 2.5, 0.2),
             schedules.Sigmoid(0.7, 0.9, 1.5), schedules.Cyclical(0.9, 1.3, 0.4, 2)]
SHAPES = [(1, 1), (2, 1), (1, 2), (2, 2), (3, 2), (4, 4)]


def _params(M: int, Ms: int, beta: object, lam: float, seed: int) -> Params:
    rng = np.random.default_rng(seed)
    return Params(M=M, M_star=Ms, rho=rng.uniform(0.5, 2.0, Ms), eta=0.7, beta=beta, lam=lam,
                  tau=0.7)


def _flat(ds: xr.Dataset, p: Params) -> NDArray[np.float64]:
    return layout(p).pack({k: ds[k].values for k in OPS})


# ---------------------------------------------------------------------------------------
# right-hand side, Jacobian, beta(t)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 0.3])
@pytest.mark.parametrize("beta", SCHEDULES, ids=lambda b: getattr(b, "kind", "constant"))
@pytest.mark.parametrize(("M", "Ms"), SHAPES)
def test_rhs_and_jacobian_equal_the_oracle(M, Ms, beta, lam):
    p = _params(M, Ms, beta, lam, 10 * M + Ms)
    rng = np.random.default_rng(M + 7 * Ms)
    for t in (0.0, 0.37, 1.3, 2.6, 4.1, None):  # on ramps, at kinks, and beta_inf
        y = layout(p).pack(oracle.random_state(p, rng))
        f, f0 = rhs(t, y, p), oracle.rhs(t, y, p)
        assert np.abs(f - f0).max() <= 1e-12 * max(1.0, np.abs(f0).max()), t
        J, J0 = jacobian(p, y, t), oracle.jacobian(p, y, t)
        assert J.shape == (y.size, y.size)
        assert np.abs(J - J0).max() <= 1e-12 * max(1.0, np.abs(J0).max()), t
    # leading axes and the dict form
    Y = np.stack([layout(p).pack(oracle.random_state(p, rng)) for _ in range(4)])
    np.testing.assert_allclose(rhs(1.1, Y, p), oracle.rhs(1.1, Y, p), rtol=1e-12, atol=1e-13)
    out = rhs(1.1, layout(p).unpack(Y), p)
    np.testing.assert_allclose(layout(p).pack(out), oracle.rhs(1.1, Y, p), rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("beta", SCHEDULES[1:], ids=lambda b: b.kind)
def test_beta_of_builtin_schedules_is_evaluated_as_in_python(beta):
    from linvae.ode import _system

    p = Params(beta=beta)
    s = _system(p)
    t = np.concatenate([np.linspace(0.0, 6.0, 601), [1.3, 2.6, 2.5, 1.5, 0.52]])
    ours = np.array([s.beta(float(x)) for x in t])
    np.testing.assert_allclose(ours, beta(t), rtol=1e-15, atol=1e-15)


@dataclasses.dataclass(frozen=True)
class _Quadratic(schedules.Schedule):
    """A schedule of a kind the compiled code does not know."""

    beta_inf: float
    kind: ClassVar[str] = "quadratic"

    def _beta(self, t):
        return self.beta_inf * np.minimum(t / 4.0, 1.0) ** 2

    def limit(self) -> float:
        return self.beta_inf


def test_other_schedule_kinds_get_beta_from_python():
    p = Params(M=2, M_star=1, beta=_Quadratic(0.7), lam=0.1)
    rng = np.random.default_rng(3)
    y = layout(p).pack(oracle.random_state(p, rng))
    np.testing.assert_allclose(rhs(1.7, y, p), oracle.rhs(1.7, y, p), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jacobian(p, y, 1.7), oracle.jacobian(p, y, 1.7), rtol=1e-12,
                               atol=1e-14)
    ds = integrate(p, t_max=10.0, record_every=1.0)  # "auto" falls back to SciPy's LSODA
    assert (ds.attrs["solver"], ds.attrs["method"]) == ("scipy", "LSODA")
    ref = oracle.integrate(p, layout(p).pack(overlap_state(p)), ds["t"].values, "LSODA")
    np.testing.assert_allclose(_flat(ds, p), ref, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="built-in kind"):
        integrate(p, t_max=1.0, solver="compiled")


# ---------------------------------------------------------------------------------------
# integration
# ---------------------------------------------------------------------------------------
CASES = [  # (M, M*, rho, beta, lam, tau)
    (1, 1, 1.0, 0.5, 0.0, 0.5),
    (3, 3, (2.0, 1.25, 0.5), 0.5, 0.0, 0.5),
    (2, 1, 1.0, 0.9, 0.0, 0.5),
    (2, 2, (2.0, 1.0), schedules.Tanh(0.5, 0.05), 0.1, 0.5),
    (1, 1, 1.0, 0.05, 0.0, 0.5),  # stiff: D -> beta / (Q + beta) is small
]


def _case(M, Ms, rho, beta, lam, tau) -> Params:
    return Params(M=M, M_star=Ms, rho=rho, eta=1.0, beta=beta, lam=lam, tau=tau)


@pytest.mark.parametrize("method", ["RK45", "Radau"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1]}-{c[3]}")
def test_compiled_ports_take_scipys_steps(case, method):
    p = _case(*case)
    ds = integrate(p, t_max=100.0, record_every=0.5, method=method)
    assert ds.attrs["solver"] == "compiled"
    ref = oracle.integrate(p, layout(p).pack(overlap_state(p)), ds["t"].values, method)
    assert np.abs(_flat(ds, p) - ref).max() <= 1e-8


@pytest.mark.parametrize("method", ["LSODA", "BDF", "DOP853"])
def test_scipy_methods_with_compiled_callbacks_equal_the_oracle(method):
    p = _case(*CASES[3])
    ds = integrate(p, t_max=50.0, record_every=0.5, method=method)
    assert ds.attrs["solver"] == "scipy"
    ref = oracle.integrate(p, layout(p).pack(overlap_state(p)), ds["t"].values, method)
    assert np.abs(_flat(ds, p) - ref).max() <= 1e-10


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1]}-{c[3]}")
def test_default_integrate_equals_accurate_oracle_solution(case):
    p = _case(*case)
    ds = integrate(p, t_max=100.0)  # method "auto", rtol 1e-8, atol 1e-10
    assert (ds.attrs["method"], ds.attrs["solver"]) == ("auto", "compiled")
    accurate = oracle.integrate(p, layout(p).pack(overlap_state(p)), ds["t"].values,
                                "DOP853", rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_flat(ds, p), accurate, rtol=2e-8, atol=1e-8)
    # the dataset is what make_dataset builds from the states
    assert ds.sizes["t"] == 1001 and ds.attrs["truncated"] == 0
    lam = min_gram_eigenvalue({k: ds[k].values for k in OPS})
    assert ds.attrs["min_gram_eigenvalue"] == pytest.approx(lam.min(), abs=1e-13)


@pytest.mark.parametrize("case", CASES[:2], ids=["11", "33"])
def test_default_method_gives_the_old_answers(case):
    # the old path: solve_ivp's LSODA with the NumPy right-hand side and Jacobian
    p = _case(*case)
    ds = integrate(p, t_max=100.0, rtol=1e-10, atol=1e-12)
    old = oracle.integrate(p, layout(p).pack(overlap_state(p)), ds["t"].values, "LSODA",
                           rtol=1e-10, atol=1e-12)
    assert np.abs(_flat(ds, p) - old).max() <= 1e-8


def test_final_state_is_integrates_last_state():
    p = _case(*CASES[2])
    s = final_state(p, 40.0, init=overlap_state(p, 0.3))
    ds = integrate(p, t_max=40.0, init=overlap_state(p, 0.3), record_every=40.0)
    for k in OPS:
        np.testing.assert_array_equal(s[k], ds[k].isel(t=-1).values)
    with pytest.raises(IntegrationError, match="ran away"):
        final_state(p.replace(tau=5.0), 20.0)


@pytest.mark.parametrize("method", COMPILED_METHODS)
def test_compiled_runaway_is_an_integration_error(method):
    p = Params(tau=5.0)  # far beyond the step-size limit
    with pytest.raises(IntegrationError, match="ran away") as info:
        integrate(p, t_max=20.0, method=method)
    assert 0 < info.value.t < 20.0
    assert info.value.partial is not None and info.value.partial.attrs["truncated"] == 1


def test_record_checks_find_the_first_unphysical_record_and_the_exact_minimum():
    from linvae.ode import _system

    p = _case(*CASES[2])
    ds = integrate(p, t_max=30.0, init=oracle.random_state(p, np.random.default_rng(1), 0),
                   record_every=0.05)
    Y = np.ascontiguousarray(_flat(ds, p))
    lam = min_gram_eigenvalue(layout(p).unpack(Y))
    first, lam_bad, lam_min = _system(p).check_records(Y, 1e-8)
    assert first == -1 and lam_min == pytest.approx(lam.min(), abs=1e-13)
    Y[300, layout(p).slices["Q"].start] = -0.5  # Q_00 < 0: not PSD
    Y[400, layout(p).slices["D"].start] = -1.0
    first, lam_bad, lam_min = _system(p).check_records(Y, 1e-8)
    assert first == 300
    assert lam_bad == pytest.approx(min_gram_eigenvalue(layout(p).unpack(Y[300])), abs=1e-13)
    assert lam_min == pytest.approx(lam[:300].min(), abs=1e-13)


def test_concurrent_integrations_share_the_cached_system_safely():
    p = _case(*CASES[1])
    ref = _flat(integrate(p, t_max=30.0), p)
    out: list[NDArray[np.float64]] = []

    def work() -> None:
        for _ in range(3):
            out.append(_flat(integrate(p, t_max=30.0), p))
            rhs(0.0, layout(p).pack(overlap_state(p)), p)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(out) == 12
    for y in out:
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"solver": "fortran"}, "solver must be"),
    ({"method": "LSODA", "solver": "compiled"}, "no compiled implementation"),
    ({"method": "auto", "solver": "scipy"}, "compiled only"),
    ({"method": "Euler"}, "method must be one of"),
])
def test_integrate_rejects_bad_solver_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        integrate(Params(), t_max=1.0, **kwargs)


# ---------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------
def _point(p: Params, ds: xr.Dataset, idx: dict[str, int]) -> Params:
    changes: dict[str, object] = {}
    for name in ds.attrs["grid"].split(","):
        v = float(ds[name].values[idx[name]])
        if name.startswith("rho_"):
            rho = list(changes.get("rho", p.rho))  # type: ignore[call-overload]
            rho[int(name[4:])] = v
            changes["rho"] = rho
        elif name in ("rho", "eta", "beta", "lam", "tau"):
            changes[name] = v
        else:
            changes["beta"] = dataclasses.replace(p.beta, **{name: v})
    return p.replace(**changes)


GRIDS = [
    (Params(M=1, M_star=1, tau=0.3), {"beta": [0.2, 0.9, 2.5], "rho": [0.0, 0.7, 1.8]}),
    (Params(M=2, M_star=2, rho=(2.0, 1.0), beta=schedules.Tanh(0.6, 0.2), lam=0.05),
     {"gamma": [0.05, 0.3], "rho_1": [0.5, 1.5], "eta": [0.8, 1.2]}),
    (Params(M=2, M_star=1, beta=0.7, tau=0.2), {"lam": [0.0, 0.2], "tau": [0.1, 0.4]}),
]


@pytest.mark.parametrize(("p", "grid"), GRIDS)
def test_integrate_grid_equals_integrate_per_point(p, grid):
    ds = integrate_grid(p, grid, t_max=20.0, record_every=2.0, threads=2)
    assert ds.attrs["kind"] == "ode_grid"
    assert tuple(ds["Q"].dims) == (*grid, "t", "latent", "latent2")
    assert np.all(ds["status"].values == 0)
    for idx in np.ndindex(*(len(v) for v in grid.values())):
        at = dict(zip(grid, idx, strict=True))
        pp = _point(p, ds, at)
        one = integrate(pp, t_max=20.0, record_every=2.0)
        here = ds.isel(at)
        for k in (*OPS, "eg", "rate", "distortion", "loss"):
            np.testing.assert_allclose(here[k].values, one[k].values, rtol=1e-13,
                                       atol=1e-14, err_msg=f"{k} at {at}")
        # eps_g with the point's own rho, as observables.eg computes it
        np.testing.assert_allclose(here["eg"].values,
                                   observables.eg(one["m"].values, one["Q"].values, pp.rho),
                                   rtol=1e-13, atol=1e-14)
        if "beta" not in grid:
            np.testing.assert_allclose(here["beta"].values, one["beta"].values, rtol=1e-15)


def test_integrate_grid_marks_runaway_points_and_keeps_the_others():
    p = Params(M=1, M_star=1)
    ds = integrate_grid(p, {"tau": [0.5, 5.0]}, t_max=20.0, record_every=1.0)
    assert ds["status"].values.tolist() == [0, 2]
    bad = ds.isel(tau=1)
    assert 0 < float(bad["t_unphysical"]) < 20.0
    assert np.isnan(bad["Q"].values[-1]).all() and np.isfinite(bad["Q"].values[0]).all()
    good = integrate(p, t_max=20.0, record_every=1.0)
    np.testing.assert_allclose(ds["Q"].isel(tau=0).values, good["Q"].values, rtol=1e-14)


def test_grid_results_do_not_depend_on_threads():
    p, grid = GRIDS[0]
    one = steady_state_grid(p, grid, threads=1)
    two = steady_state_grid(p, grid, threads=2)
    xr.testing.assert_identical(one, two)


@pytest.mark.parametrize(("p", "grid"), [
    (Params(M=1, M_star=1, tau=0.3), {"beta": [0.2, 0.9, 1.6, 2.5], "rho": [0.0, 0.7, 1.8]}),
    (Params(M=2, M_star=1, tau=0.2), {"beta": [0.5, 0.9, 1.03, 1.5]}),  # superfluous latent
    (Params(M=2, M_star=2, rho=(2.0, 1.0), tau=0.3), {"beta": [0.5, 1.5, 2.5, 3.5]}),
    (Params(M=2, M_star=2, rho=(1.0, 1.0), tau=0.3), {"beta": [0.5, 1.0]}),  # a rotation mode
])
def test_steady_state_grid_equals_the_stable_fixed_point(p, grid):
    ds = steady_state_grid(p, grid)
    assert ds.attrs["kind"] == "steady_state_grid"
    for idx in np.ndindex(*(len(v) for v in grid.values())):
        at = dict(zip(grid, idx, strict=True))
        pp = _point(p, ds, at)
        here = ds.isel(at)
        assert bool(here["stable"]), (at, int(here["status"]))
        fp = stability.stable_fixed_point(pp)
        assert float(here["residual"]) <= 1e-10
        assert float(here["eg"]) == pytest.approx(fp.eg, abs=1e-8)
        assert float(here["loss"]) == pytest.approx(fp.loss, abs=1e-8)
        assert float(here["max_real"]) == pytest.approx(fp.max_real, abs=1e-7)
        assert int(here["n_learned"]) == fp.kinds.count("learned")
        # the state is that fixed point up to the model's symmetries
        state = {k: here[k].values for k in OPS}
        assert search._equivalent(pp, fp.state, search._canonical(state), tol=1e-7)
        np.testing.assert_allclose(float(here["eg"]),
                                   observables.eg(state["m"], state["Q"], pp.rho), rtol=1e-14)


def test_steady_state_grid_near_the_collapse_threshold():
    # within 1e-3 of beta = rho + eta the approach is slow (a power law at the threshold)
    p = Params(M=1, M_star=1, eta=1.0, tau=0.1)
    rho = 2.0606060606060606
    ds = steady_state_grid(p, {"rho": [rho], "beta": [rho + 1.0 - 1e-3, rho + 1.0 + 1e-3]})
    assert ds["stable"].values.all()
    assert ds["n_learned"].values.ravel().tolist() == [1, 0]
    # exactly at the threshold the fixed point is marginal (eigenvalue 0): none is stable
    at = steady_state_grid(p.replace(rho=0.7), {"beta": [1.7]})
    assert not at["stable"].item() and at["status"].item() == 1
    assert np.isnan(at["eg"].item()) and at["n_learned"].item() == -1


@pytest.mark.parametrize(("grid", "exc", "match"), [
    ({}, TypeError, "non-empty mapping"),
    ({"gamma": [0.1]}, ValueError, "unknown parameter 'gamma'"),
    ({"beta": [[0.1, 0.2]]}, ValueError, r"grid\['beta'\] must be a non-empty 1-d"),
    ({"beta": []}, ValueError, "non-empty 1-d"),
    ({"beta": [0.5, -1.0]}, ValueError, r"grid\['beta'\]\[1\]: beta must be >= 0, got -1"),
    ({"eta": [0.0]}, ValueError, r"grid\['eta'\]\[0\]: eta must be > 0"),
    ({"rho": ["a"]}, TypeError, r"grid\['rho'\] must be a 1-d array of numbers"),
])
def test_grids_validate_their_arguments(grid, exc, match):
    for fn in (integrate_grid, steady_state_grid):
        with pytest.raises(exc, match=match):
            fn(Params(), grid)


def test_grids_validate_the_rest():
    p = Params(M=1, M_star=2, rho=(1.0, 2.0), beta=schedules.Tanh(0.5, 0.1))
    with pytest.raises(ValueError, match="exclude each other"):
        integrate_grid(p, {"rho": [1.0], "rho_0": [1.0]})
    with pytest.raises(ValueError, match="exclude each other"):
        integrate_grid(p, {"beta": [1.0], "gamma": [0.2]})
    with pytest.raises(ValueError, match=r"grid\['gamma'\]\[0\]: gamma must be > 0"):
        integrate_grid(p, {"gamma": [0.0]})
    with pytest.raises(ValueError, match="method must be one of"):
        integrate_grid(p, {"gamma": [0.2]}, method="LSODA")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        integrate_grid(p, {"gamma": [0.2]}, threads=0)
    with pytest.raises(ValueError, match="built-in kind"):
        integrate_grid(Params(beta=_Quadratic(0.5)), {"eta": [1.0]})
    with pytest.raises(ValueError, match="beta_inf\\) > 0"):
        steady_state_grid(Params(), {"beta": [0.0, 1.0]})
    with pytest.raises(ValueError, match="t_settle must be > 0"):
        steady_state_grid(Params(), {"beta": [1.0]}, t_settle=-1.0)


def test_python_baseline_of_the_benchmarks_runs_the_old_way(monkeypatch):
    # benchmarks/bench_ode.py times the public calls with the oracle in the compiled
    # system's place: that must still be the old computation (SciPy's LSODA, NumPy)
    import linvae.ode

    p = _case(*CASES[2])
    fast = integrate(p, t_max=30.0, record_every=1.0)
    fps = stability.fixed_points(p, integrate_starts=True)
    monkeypatch.setattr(linvae.ode, "_system", oracle.PythonSystem.of)
    slow = integrate(p, t_max=30.0, record_every=1.0)
    old = oracle.integrate(p, layout(p).pack(overlap_state(p)), slow["t"].values, "LSODA")
    np.testing.assert_allclose(_flat(slow, p), old, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(_flat(slow, p), _flat(fast, p), rtol=1e-6, atol=1e-7)
    assert slow.attrs["min_gram_eigenvalue"] == pytest.approx(
        fast.attrs["min_gram_eigenvalue"], abs=1e-6)
    slow_fps = stability.fixed_points(p, integrate_starts=True)
    assert [f.kinds for f in slow_fps] == [f.kinds for f in fps]
    for a, b in zip(slow_fps, fps, strict=True):
        assert a.eg == pytest.approx(b.eg, abs=1e-10)
