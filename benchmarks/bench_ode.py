"""Speed of the compiled ODEs against the pure-Python right-hand side, in the same run.

Every benchmark runs twice, with ``impl`` = "compiled" (the package as it is) and
"python": tests/ode_oracle.PythonSystem in the compiled system's place, i.e. the NumPy
right-hand side, Jacobian and Gram checks and SciPy's LSODA loop, which is how linvae
integrated before. The same public call is timed both ways, so the ratio of the medians
is what the compiled code buys. Cases: ``integrate`` to t = 100 for (M, M*) = (1, 1),
(2, 2), (3, 3) and (4, 4); one right-hand-side call; ``fixed_points`` for (2, 1); and a
100 x 100 (beta, rho) phase diagram of the steady state (``steady_state_grid``), whose
Python side is timed on 16 of its points and scaled to 10^4 (it would take minutes).

Run with ``python -m pytest benchmarks/bench_ode.py -p no:randomly``; the summary at the
end prints the medians per unit, the ratios and the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ode_oracle  # the NumPy oracle lives with the tests (pythonpath in pyproject.toml)
import pytest

import linvae
import linvae.ode
from linvae import Params, stability
from linvae.ode import integrate, layout, rhs, steady_state_grid
from linvae.stability import search
from linvae.states import overlap_state

CASES = {
    "(1,1)": Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5),
    "(2,2)": Params(M=2, M_star=2, rho=(2.0, 1.0), eta=1.0, beta=0.5, tau=0.5),
    "(3,3)": Params(M=3, M_star=3, rho=(2.0, 1.25, 0.5), eta=1.0, beta=0.5, tau=0.5),
    "(4,4)": Params(M=4, M_star=4, rho=(2.0, 1.5, 1.0, 0.5), eta=1.0, beta=0.5, lam=0.1,
                    tau=0.5),
}
FIXED_POINT = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2)
PHASE = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.1)
PHASE_GRID = {"rho": np.linspace(0.0, 3.0, 100), "beta": np.linspace(0.05, 4.5, 100)}


@pytest.fixture(params=["compiled", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(linvae.ode, "_system", ode_oracle.PythonSystem.of)
    return str(request.param)


def _info(benchmark: Any, what: str, case: str, impl: str, units: int = 1) -> None:
    benchmark.extra_info.update(ode=what, case=case, impl=impl, units=units)


@pytest.mark.parametrize("case", list(CASES))
def test_integrate(benchmark: Any, impl: str, case: str) -> None:
    # the default call: t = 100, records every 0.1, rtol 1e-8, atol 1e-10
    _info(benchmark, "integrate t=100", case, impl)
    benchmark(integrate, CASES[case], t_max=100.0)


@pytest.mark.parametrize("case", ["(1,1)", "(4,4)"])
def test_rhs_call(benchmark: Any, impl: str, case: str) -> None:
    p = CASES[case]
    y = layout(p).pack(overlap_state(p))
    _info(benchmark, "rhs call", case, impl)
    benchmark(rhs, 0.0, y, p)


def test_fixed_points(benchmark: Any, impl: str) -> None:
    # the per-latent blocks are cached across calls: start every round without them
    _info(benchmark, "fixed_points", "(2,1)", impl)
    benchmark.pedantic(stability.fixed_points, args=(FIXED_POINT,),
                       setup=search._block.cache_clear, rounds=5, iterations=1)


def _python_steady_states(points: list[Params], t_settle: float) -> None:
    # one round of steady_state_grid's algorithm per point: run, refine, eigenvalues
    for pp in points:
        end = linvae.ode.final_state(pp, t_settle)
        out = search._refine(pp, layout(pp).pack(end))
        if out is not None:
            np.linalg.eigvals(linvae.ode.jacobian(pp, out[0]))


def test_phase_diagram_grid(benchmark: Any, impl: str) -> None:
    size = PHASE_GRID["rho"].size * PHASE_GRID["beta"].size
    if impl == "compiled":
        _info(benchmark, "steady-state grid", "100x100", impl, units=size)
        benchmark.pedantic(steady_state_grid, args=(PHASE, PHASE_GRID), rounds=3, iterations=1)
        return
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 100, 16), rng.integers(0, 100, 16)
    points = [PHASE.replace(rho=float(PHASE_GRID["rho"][a]), beta=float(PHASE_GRID["beta"][b]))
              for a, b in zip(i, j, strict=True)]
    _info(benchmark, "steady-state grid", "100x100", impl, units=len(points))
    benchmark.pedantic(_python_steady_states, args=(points, max(100.0, 20.0 / PHASE.tau)),
                       rounds=2, iterations=1)
