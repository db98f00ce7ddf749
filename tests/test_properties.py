"""Property-based robustness: random valid input runs, random invalid input raises cleanly.

Every strategy is derandomized (the same examples on every run) and small: small N,
short runs, so the file stays well under a minute. A SIGALRM guard turns a hang into a
test failure instead of a stuck CI job. The number of generated inputs tried per
property is counted in ``TRIED`` and printed by the last test (``pytest -s`` or ``-rP``).
"""

from __future__ import annotations

import math
import signal
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import linvae
from linvae import Params, schedules
from linvae.errors import IntegrationError
from linvae.states import overlap_state

TRIED: Counter[str] = Counter()
SETTINGS = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow])
ALARM_SECONDS = 120  # per test function (all its examples); generous for a slow CI host


class Hung(BaseException):
    """Raised by the SIGALRM guard."""


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Fail (rather than hang) if one property takes longer than ALARM_SECONDS."""
    def on_alarm(signum: int, frame: Any) -> None:
        # a BaseException, so hypothesis does not catch it and shrink (re-running slow cases)
        raise Hung(f"property test exceeded {ALARM_SECONDS} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(ALARM_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------
pos = st.floats(min_value=1e-3, max_value=5.0, allow_nan=False, allow_infinity=False)
nonneg = st.floats(min_value=0.0, max_value=5.0, allow_nan=False, allow_infinity=False)


@st.composite
def schedules_(draw: st.DrawFn) -> float | schedules.Schedule:
    kind = draw(st.sampled_from(["const", "tanh", "linear", "sigmoid", "cyclical"]))
    b = draw(nonneg)
    if kind == "const":
        return b
    if kind == "tanh":
        return schedules.Tanh(b, draw(pos))
    if kind == "linear":
        return schedules.Linear(b, draw(pos), draw(nonneg))
    if kind == "sigmoid":
        return schedules.Sigmoid(b, draw(pos), draw(nonneg))
    return schedules.Cyclical(b, draw(pos), draw(st.floats(0.05, 1.0)),
                              draw(st.integers(1, 4)))


@st.composite
def params_(draw: st.DrawFn, max_latents: int = 3, tau: st.SearchStrategy[float] | None = None
            ) -> Params:
    M = draw(st.integers(1, max_latents))
    Ms = draw(st.integers(1, max_latents))
    rho = draw(st.one_of(nonneg, st.lists(nonneg, min_size=Ms, max_size=Ms)))
    return Params(M=M, M_star=Ms, rho=rho, eta=draw(pos), beta=draw(schedules_()),
                  lam=draw(st.floats(0.0, 1.0)),
                  tau=draw(tau if tau is not None else st.floats(1e-3, 3.0)))


def check_simulation(ds: Any, p: Params, N: int, t_max: float) -> None:
    """Finite where alive; a diverged replica is flagged, dated and NaN afterwards only."""
    assert ds.sizes["latent"] == p.M and ds.sizes["factor"] == p.M_star
    t = ds.t.values
    assert t[0] == 0.0 and math.isclose(t[-1], round(t_max * N) / N)
    assert np.all(np.diff(t) > 0)
    for r in range(ds.sizes["replica"]):
        rep = ds.isel(replica=r)
        Q = rep.Q.values
        if bool(rep.diverged):
            td = float(rep.t_diverged)
            assert 0.0 <= td <= t_max + 1.0 / N
            assert str(rep.divergence.values) in ("non-finite value", "D <= 0", "blow-up")
            assert np.isfinite(Q[t < td - 1e-12]).all()
            assert np.isnan(Q[t > td + 1e-12]).all()
        else:
            assert math.isnan(float(rep.t_diverged))
            for k in ("m", "d", "Q", "E", "R", "D", "eg"):
                assert np.isfinite(rep[k].values).all(), k
            assert (rep.D.values > 0).all()
            np.testing.assert_allclose(Q, np.swapaxes(Q, -1, -2), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# valid input: runs, finite or flagged
# ---------------------------------------------------------------------------------------
@settings(SETTINGS, max_examples=40)
@given(p=params_(), N=st.integers(8, 200), t_max=st.floats(0.02, 1.0),
       n_rec=st.integers(1, 6), seeds=st.integers(1, 3), seed=st.integers(0, 2**63 - 1),
       dtype=st.sampled_from(["float64", "float32"]))
def test_simulate_valid_input_is_finite_or_flagged(p: Params, N: int, t_max: float, n_rec: int,
                                                   seeds: int, seed: int, dtype: str) -> None:
    assume(N >= p.M_star)
    TRIED["simulate valid"] += 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = linvae.simulate(p, N=N, t_max=t_max, record_every=t_max / n_rec, seeds=seeds,
                             seed=seed, dtype=dtype, progress=False)  # type: ignore[arg-type]
    check_simulation(ds, p, N, t_max)
    n_warned = sum(issubclass(w.category, linvae.errors.DivergenceWarning) for w in caught)
    assert n_warned == int(ds.diverged.sum())


@settings(SETTINGS, max_examples=20)
@given(p=params_(tau=st.floats(1e-3, 1.5)), extra=st.integers(0, 100),
       overlap=st.floats(-1.0, 1.0), seed=st.integers(0, 1000))
def test_simulate_prescribed_init_is_finite_or_flagged(p: Params, extra: int, overlap: float,
                                                       seed: int) -> None:
    TRIED["simulate prescribed"] += 1
    N = p.M_star + 2 * p.M + extra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linvae.errors.DivergenceWarning)
        ds = linvae.simulate(p, N=N, t_max=0.2, record_every=0.1, seeds=2, seed=seed,
                             init=overlap_state(p, overlap), progress=False)
    check_simulation(ds, p, N, 0.2)
    # the prescribed state is realised exactly at t = 0
    s0 = overlap_state(p, overlap)
    for k in ("m", "d", "Q", "E", "R", "D"):
        np.testing.assert_allclose(ds[k].isel(t=0).values[0], s0[k], atol=1e-9)


@settings(SETTINGS, max_examples=15)
@given(p=params_(tau=st.floats(1e-3, 1.0)), t_max=st.floats(0.1, 2.0), n_rec=st.integers(1, 10),
       overlap=st.floats(-1.0, 1.0), method=st.sampled_from(["LSODA", "Radau"]))
def test_integrate_valid_input_is_finite_or_reports_unphysical(
        p: Params, t_max: float, n_rec: int, overlap: float, method: str) -> None:
    TRIED["integrate valid"] += 1
    try:
        ds = linvae.integrate(p, t_max=t_max, record_every=t_max / n_rec,
                              init=overlap_state(p, overlap), method=method)
    except IntegrationError as exc:  # documented: it left the PSD cone, or ran away
        error = exc
    else:
        error = None
    if error is not None:
        assert error.t <= t_max * (1 + 1e-9)
        assert error.partial is None or np.isfinite(error.partial.Q.values).all()
        return
    for k in ("m", "d", "Q", "E", "R", "D", "eg"):
        assert np.isfinite(ds[k].values).all(), k
    assert (ds.D.values > 0).all()
    assert ds.t.values[0] == 0.0 and ds.t.values[-1] <= t_max * (1 + 1e-12)


@settings(SETTINGS, max_examples=40)
@given(p=params_(max_latents=4), t=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=5))
def test_params_round_trip_and_schedules_are_finite(p: Params, t: list[float]) -> None:
    TRIED["params round trip"] += 1
    assert Params.from_attrs(p.to_attrs()) == p
    assert p.replace() == p
    beta = p.beta_at(np.array(t))
    assert beta.shape == (len(t),) and np.isfinite(beta).all() and (beta >= 0).all()
    assert math.isfinite(p.beta_inf) and p.beta_inf >= 0
    assert schedules.from_dict(p.beta.to_dict()) == p.beta


# ---------------------------------------------------------------------------------------
# invalid input: the documented exceptions only, naming the parameter
# ---------------------------------------------------------------------------------------
BAD_REAL = st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")),
                     st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                     st.text(max_size=3), st.none(), st.complex_numbers(allow_nan=False),
                     st.lists(st.floats(), max_size=2))
BAD_INT = st.one_of(st.integers(max_value=0), st.floats().filter(lambda x: not x.is_integer()
                                                                 if math.isfinite(x) else True),
                    st.text(max_size=3), st.none(), st.booleans())
BAD_RHO = st.one_of(st.just(float("nan")), st.just(float("inf")),
                   st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                   st.text(max_size=3), st.none(),
                   st.lists(st.floats(0, 1), min_size=2, max_size=3),  # M_star = 1
                   st.lists(st.floats(max_value=-1e-9), min_size=1, max_size=1))
PARAM_RULES = {"M": BAD_INT, "M_star": BAD_INT, "eta": st.one_of(BAD_REAL, st.just(0.0)),
               "tau": st.one_of(BAD_REAL, st.just(0.0)), "lam": BAD_REAL, "beta": BAD_REAL,
               "rho": BAD_RHO}


@settings(SETTINGS, max_examples=150)
@given(data=st.data(), name=st.sampled_from(sorted(PARAM_RULES)))
def test_params_invalid_input_raises_documented_errors(data: st.DataObject, name: str) -> None:
    TRIED["params invalid"] += 1
    bad = data.draw(PARAM_RULES[name], label=name)
    with pytest.raises((ValueError, TypeError)) as info:
        Params(**{name: bad})
    assert name in str(info.value)


SIM_RULES = {"N": BAD_INT, "seeds": BAD_INT, "t_max": st.one_of(BAD_REAL, st.just(0.0)),
             "record_every": st.one_of(BAD_REAL, st.just(0.0), st.floats(1.01, 1e300)),
             "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63)),
             "threads": st.integers(max_value=0), "blowup": st.one_of(BAD_REAL, st.just(0.0)),
             "dtype": st.text(max_size=8).filter(lambda s: s not in ("float64", "float32"))}


@settings(SETTINGS, max_examples=150)
@given(data=st.data(), name=st.sampled_from(sorted(SIM_RULES)))
def test_simulate_invalid_input_raises_documented_errors(data: st.DataObject, name: str) -> None:
    TRIED["simulate invalid"] += 1
    bad = data.draw(SIM_RULES[name], label=name)
    kw: dict[str, Any] = {"N": 20, "t_max": 1.0, "record_every": 0.5, "progress": False}
    kw[name] = bad
    with pytest.raises((ValueError, TypeError)) as info:
        linvae.simulate(Params(), **kw)
    assert name in str(info.value)


@settings(SETTINGS, max_examples=60)
@given(N=st.integers(10**11, 10**18), seeds=st.integers(1, 64), M=st.integers(1, 4))
def test_absurd_sizes_raise_memory_error(N: int, seeds: int, M: int) -> None:
    TRIED["simulate absurd size"] += 1
    with pytest.raises(MemoryError, match=rf"N={N} with seeds={seeds} needs about"):
        linvae.simulate(Params(M=M), N=N, t_max=1.0, seeds=seeds, progress=False)


ODE_RULES = {"t_max": st.one_of(BAD_REAL, st.just(0.0)),
             "record_every": st.one_of(BAD_REAL, st.just(0.0), st.floats(20.01, 1e300)),
             "rtol": st.one_of(BAD_REAL, st.just(0.0)), "atol": st.one_of(BAD_REAL, st.just(0.0)),
             "method": st.text(max_size=6).filter(lambda s: s not in linvae.ode.METHODS)}


@settings(SETTINGS, max_examples=80)
@given(data=st.data(), name=st.sampled_from(sorted(ODE_RULES)))
def test_integrate_invalid_input_raises_documented_errors(data: st.DataObject, name: str) -> None:
    TRIED["integrate invalid"] += 1
    bad = data.draw(ODE_RULES[name], label=name)
    kw: dict[str, Any] = {"t_max": 20.0, "record_every": 1.0, name: bad}
    with pytest.raises((ValueError, TypeError)) as info:
        linvae.integrate(Params(), **kw)
    assert name in str(info.value)


@st.composite
def bad_states(draw: st.DrawFn) -> tuple[Params, dict[str, Any], str]:
    """A physical state of random (M, M*) with one order parameter broken."""
    p = draw(params_())
    s: dict[str, Any] = {k: np.array(v) for k, v in overlap_state(p, draw(st.floats(-1, 1))).items()}
    key = draw(st.sampled_from(["m", "d", "Q", "E", "R", "D"]))
    how = draw(st.sampled_from(["nan", "inf", "shape", "missing", "D<=0", "not-psd"]))
    if how == "nan":
        s[key] = s[key].copy()
        s[key].flat[draw(st.integers(0, s[key].size - 1))] = np.nan
    elif how == "inf":
        s[key] = np.full_like(s[key], np.inf)
    elif how == "shape":
        s[key] = np.zeros((*s[key].shape, 2))
    elif how == "missing":
        del s[key]
    elif how == "D<=0":
        key = "D"
        s["D"] = s["D"].copy()
        s["D"][draw(st.integers(0, p.M - 1))] = -draw(nonneg)
    else:  # Q must be >= m m^T: shrink Q far below
        key = "Q"
        s["Q"] = s["Q"] - (2.0 + draw(nonneg)) * np.eye(p.M)
    return p, s, key


@settings(SETTINGS, max_examples=60)
@given(case=bad_states(), target=st.sampled_from(["simulate", "integrate"]))
def test_bad_prescribed_states_are_rejected(case: tuple[Params, dict[str, Any], str],
                                            target: str) -> None:
    TRIED["bad prescribed state"] += 1
    p, state, key = case
    call: Any = (lambda: linvae.simulate(p, N=50, t_max=0.1, init=state, progress=False)) \
        if target == "simulate" else (lambda: linvae.integrate(p, t_max=1.0, init=state))
    with pytest.raises(ValueError, match="init") as info:
        call()
    msg = str(info.value)
    assert f"'{key}'" in msg or "realisable" in msg, msg


def test_zz_report_how_many_inputs_were_tried() -> None:
    """Printed with ``pytest -s``; asserts every property above actually ran examples."""
    print("\nhypothesis examples tried:", dict(TRIED), "total", sum(TRIED.values()))
    if len(TRIED) < 9:  # some property above was deselected (e.g. -k): nothing to check
        pytest.skip("not every property ran in this session")
    assert all(n > 0 for n in TRIED.values())
