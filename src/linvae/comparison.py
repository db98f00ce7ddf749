"""SGD against the ODE: the deterministic limit (docs/model.md#odes, docs/model.md#findings).

:func:`compare` runs one-pass SGD at several N from a prescribed start, integrates the
ODE from the same start on each simulation's own time grid, and measures how far the
SGD replica trajectories are from the ODE: per N and per order parameter the largest
and the root-mean-square deviation over replicas, times and matrix entries. A
log-log least-squares fit of gap against N gives an exponent that should be close to
-1/2 (fluctuations of one-pass SGD around its deterministic limit). Each N may be
simulated with the weights or with the Gram chain (docs/model.md#gram-chain), whose cost
does not grow with N, so that the law can be followed up to N = 1e8 and beyond.

Next to the gaps, :attr:`Comparison.spread` holds the replicas' standard deviation per N
and the one the linear noise approximation predicts (docs/model.md#fluctuations): it is
integrated once along the ODE, at N = 1, and scaled by N^(-1/2).

:func:`run_compare` runs :func:`compare` and writes its data and its figure to a folder
(``linvae compare`` and the ``sgd_vs_ode`` figure family).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from ._validate import check_int, check_real
from .dataset import parse_state
from .observables import ORDER_PARAMETERS
from .ode import integrate
from .params import Params, check_params
from .states import overlap_state

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure

__all__ = ["VARIABLES", "Comparison", "compare", "fit_exponents", "gap_statistics",
           "run_compare", "spread_statistics"]

log = logging.getLogger("linvae")

#: Variables whose SGD-ODE gap is measured, the order parameters and eps_g.
VARIABLES = (*ORDER_PARAMETERS, "eg")
#: Gap statistics, the largest absolute deviation and the root-mean-square deviation.
STATS = ("max", "rms")


def _alive(sim: xr.Dataset) -> xr.Dataset:
    """Return the replicas that did not diverge (all of them if there is no ``diverged``)."""
    if "diverged" not in sim or "replica" not in sim.dims:
        return sim
    keep = ~np.asarray(sim["diverged"].values, dtype=bool)
    return sim.isel(replica=np.flatnonzero(keep))


def gap_statistics(sim: xr.Dataset, ode: xr.Dataset,
                   variables: Sequence[str] = VARIABLES) -> xr.Dataset:
    """Max and RMS deviation of the SGD trajectories from the ODE, per variable.

    ``sim`` has dims (replica, t, ...) and ``ode`` (t, ...) on the same t grid; diverged
    replicas are left out. Returns a Dataset with variables ``max`` and ``rms`` along
    the dim ``variable``; NaN if no replica is left.
    """
    if sim.sizes["t"] != ode.sizes["t"] or not np.allclose(sim["t"].values, ode["t"].values,
                                                           rtol=1e-9, atol=1e-12):
        raise ValueError("sim and ode must share the same t grid")
    alive = _alive(sim)
    out = {s: np.full(len(variables), np.nan) for s in STATS}
    if "replica" not in alive.dims or alive.sizes["replica"] > 0:
        for i, v in enumerate(variables):
            # plain arrays: the two datasets may label t by values differing in rounding
            dev = alive[v].values - ode[v].values
            out["max"][i] = float(np.max(np.abs(dev)))
            out["rms"][i] = float(np.sqrt(np.mean(dev * dev)))
    return xr.Dataset({s: (("variable",), out[s]) for s in STATS},
                      coords={"variable": list(variables)})


def fit_exponents(gaps: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Least-squares fit of log(gap) = log(prefactor) + exponent * log(N).

    ``gaps`` has dims (N, variable) and the variables of :data:`STATS`. Returns
    ``(exponents, prefactors)``, each with those variables along ``variable``; NaN
    where fewer than two N have a finite positive gap.
    """
    N = np.asarray(gaps["N"].values, dtype=np.float64)
    exps: dict[str, Any] = {}
    pres: dict[str, Any] = {}
    for s in STATS:
        g = np.asarray(gaps[s].transpose("N", "variable").values, dtype=np.float64)
        e = np.full(g.shape[1], np.nan)
        c = np.full(g.shape[1], np.nan)
        for j in range(g.shape[1]):
            ok = np.isfinite(g[:, j]) & (g[:, j] > 0)
            if np.unique(N[ok]).size >= 2:
                e[j], logc = np.polyfit(np.log(N[ok]), np.log(g[ok, j]), 1)
                c[j] = math.exp(logc)
        exps[s] = (("variable",), e)
        pres[s] = (("variable",), c)
    coords = {"variable": gaps["variable"].values}
    return xr.Dataset(exps, coords=coords), xr.Dataset(pres, coords=coords)


def _replica_sd(sim: xr.Dataset, v: str, t: np.ndarray) -> xr.DataArray:
    """Sample sd (ddof = 1) over the surviving replicas of ``v``, on the times ``t``."""
    alive = _alive(sim)
    da = alive[v]
    if "replica" not in da.dims or alive.sizes["replica"] < 2:
        sd = xr.full_like(da.isel(replica=0, drop=True) if "replica" in da.dims else da,
                          np.nan, dtype=np.float64)
    else:
        sd = da.std("replica", ddof=1)
    t_sim = np.asarray(sd["t"].values, dtype=np.float64)
    if t_sim.shape == t.shape and np.allclose(t_sim, t, rtol=1e-9, atol=1e-12):
        return sd.assign_coords(t=t)
    return sd.interp(t=t)  # another N's grid may differ by rounding of steps / N


def spread_statistics(p: Params, state: Mapping[str, ArrayLike] | xr.Dataset,
                      ode: xr.Dataset, sims: Mapping[int, xr.Dataset],
                      variables: Sequence[str] = VARIABLES, *, rtol: float = 1e-8,
                      atol: float = 1e-10) -> xr.Dataset:
    """Measured and predicted standard deviations per N, on the ODE's time grid.

    The prediction is :func:`linvae.fluctuations` from the prescribed ``state``,
    integrated once at N = 1 and scaled by N^(-1/2) (the LNA covariance is Sigma / N).
    Returns variables ``<v>_sd`` (predicted) and ``<v>_sd_measured`` (replicas, ddof = 1,
    diverged ones left out) for each variable v, dims (N, t, ...). Raises whatever the
    covariance equation raises (e.g. :class:`linvae.errors.IntegrationError`).
    """
    from .finite_n import fluctuations

    t = np.asarray(ode["t"].values, dtype=np.float64)
    t_end = float(t[-1])
    every = float(t[1] - t[0]) if t.size > 1 else t_end
    lna = fluctuations(p, 1, t_end, init=state, record_every=min(every, t_end), t_eval=t,
                       rtol=rtol, atol=atol)
    Ns = sorted(int(n) for n in sims)
    N_dim = xr.DataArray(Ns, dims="N", name="N")
    out = xr.Dataset()
    for v in variables:
        one = lna[f"{v}_sd"].assign_coords(t=t)
        out[f"{v}_sd"] = xr.concat([one / math.sqrt(n) for n in Ns], dim=N_dim)
        out[f"{v}_sd"].attrs["long_name"] = f"predicted standard deviation of {v} (LNA)"
        out[f"{v}_sd_measured"] = xr.concat([_replica_sd(sims[n], v, t) for n in Ns],
                                            dim=N_dim)
        out[f"{v}_sd_measured"].attrs["long_name"] = f"standard deviation of {v} over replicas"
    out["N"].attrs["long_name"] = "input dimension N"
    out.attrs.update(description="standard deviation of the order parameters over SGD "
                     "replicas and as predicted by the linear noise approximation "
                     "(docs/model.md#fluctuations)")
    return out


def _spread_ratio(spread: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """Median over t > 0 and entries of measured / predicted sd, dims (N, variable)."""
    Ns = spread["N"].values
    ratio = np.full((Ns.size, len(variables)), np.nan)
    for j, v in enumerate(variables):
        pred = spread[f"{v}_sd"].transpose("N", "t", ...).values.reshape(Ns.size, -1)
        meas = spread[f"{v}_sd_measured"].transpose("N", "t", ...).values.reshape(Ns.size, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            # entries pinned by the model (e.g. D at a prescribed start's t = 0) have no
            # spread to compare
            ok = np.isfinite(pred) & np.isfinite(meas) & (pred > 1e-12)
            for i in range(Ns.size):
                if ok[i].any():
                    ratio[i, j] = float(np.median(meas[i][ok[i]] / pred[i][ok[i]]))
    return xr.Dataset({"ratio": (("N", "variable"), ratio)},
                      coords={"N": Ns, "variable": list(variables)})


@dataclass
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    params : Params
    ode : xarray.Dataset
        The ODE trajectory on the time grid of the smallest N.
    sims : dict[int, xarray.Dataset]
        The simulation dataset per N (dims replica, t, ...).
    gaps : xarray.Dataset
        Variables ``max`` and ``rms``, dims (N, variable).
    exponents, prefactors : xarray.Dataset
        Fitted gap ~ prefactor * N**exponent, variables ``max`` and ``rms`` along ``variable``.
    n_diverged : dict[int, int]
        Number of diverged replicas per N (left out of the gaps).
    methods : dict[int, str]
        The simulation method per N, "weights" or "gram" (also the coordinate
        ``method`` of ``gaps``).
    spread : xarray.Dataset or None
        Standard deviations on the ODE's time grid, dims (N, t, ...): ``<v>_sd`` predicted
        by the linear noise approximation and ``<v>_sd_measured`` over the replicas
        (:func:`spread_statistics`); None if the prediction could not be computed.
    """

    params: Params
    ode: xr.Dataset
    sims: dict[int, xr.Dataset]
    gaps: xr.Dataset
    exponents: xr.Dataset
    prefactors: xr.Dataset
    n_diverged: dict[int, int] = field(default_factory=dict)
    methods: dict[int, str] = field(default_factory=dict)
    spread: xr.Dataset | None = None

    @property
    def Ns(self) -> list[int]:
        """The compared system sizes N, in the order of :attr:`gaps`."""
        return [int(n) for n in self.gaps["N"].values]

    @property
    def spread_ratio(self) -> xr.Dataset | None:
        """Measured / predicted sd per (N, variable), the median over t > 0 and entries.

        The variable is ``ratio``; about 1 within the replicas' sampling error, which is
        ~ 1 / sqrt(2 replicas). None without :attr:`spread`.
        """
        if self.spread is None:
            return None
        names = [str(v) for v in self.gaps["variable"].values]
        return _spread_ratio(self.spread.isel(t=slice(1, None)), names)

    def __repr__(self) -> str:
        Ns = self.Ns
        reps = {int(s.sizes.get("replica", 1)) for s in self.sims.values()}
        t_max = float(self.ode["t"].values[-1])
        lines = [(f"Comparison({self.params!r}, Ns={Ns}, replicas={sorted(reps)}, "
                  f"t_max={t_max:g})")]
        if any(m != "weights" for m in self.methods.values()):
            lines.append("  simulated by: " + ", ".join(f"N={n} {m}" for n, m in
                                                       sorted(self.methods.items())))
        if any(self.n_diverged.values()):
            lines.append(f"  diverged replicas (excluded): {self.n_diverged}")
        from .plot import n_label

        head = "  variable " + "".join(f"{'rms N=' + n_label(n):>13}" for n in Ns)
        lines.append("  SGD-ODE gap (rms over replicas, t, entries) and fitted exponent "
                     "(expect -0.5):")
        lines.append(head + f"{'exp(rms)':>10}{'exp(max)':>10}")
        for v in self.gaps["variable"].values:
            row = "".join(f"{float(self.gaps['rms'].sel(N=n, variable=v)):>13.3g}" for n in Ns)
            er = float(self.exponents["rms"].sel(variable=v))
            em = float(self.exponents["max"].sel(variable=v))
            lines.append(f"  {v!s:<9}{row}{er:>10.3f}{em:>10.3f}")
        ratio = self.spread_ratio
        if ratio is not None:
            lines.append("  replica sd / predicted sd (median over t > 0 and entries):")
            for v in ratio["variable"].values:
                row = "".join(f"{float(ratio['ratio'].sel(N=n, variable=v)):>13.3f}"
                              for n in Ns)
                lines.append(f"  {v!s:<9}{row}")
        return "\n".join(lines)

    def plot(self, variable: str = "m", stat: str = "rms",
             entries: Sequence[tuple[int, ...]] | None = None) -> Figure:
        """Figure with (a) trajectories of ``variable`` and (b) gap vs N on log-log axes."""
        from . import plot as _plot

        with _plot.style_context():
            fig = _plot.figure(ncols=2)
            ax_a, ax_b = fig.axes
            _plot.plot_trajectories(self.ode, self.sims, variable=variable, entries=entries,
                                    ax=ax_a, theory=self.spread)
            _plot.plot_gaps(self.gaps, stat=stat, exponents=self.exponents,
                            prefactors=self.prefactors, ax=ax_b)
            ax_a.set_title(f"(a) {_plot.symbol(variable)}: SGD vs ODE")
            ax_b.set_title(f"(b) SGD–ODE gap ({stat})")
        return fig


SimulateFn = Callable[..., xr.Dataset]


def _check_Ns(Ns: Any) -> list[int]:
    if isinstance(Ns, (str, bytes)) or not isinstance(Ns, Sequence | np.ndarray):
        raise TypeError(f"Ns must be a sequence of integers, got {type(Ns).__name__}")
    out = [check_int(f"Ns[{i}]", n, ge=1) for i, n in enumerate(Ns)]
    if len(set(out)) < 2:
        raise ValueError(f"Ns must hold at least two distinct N to fit an exponent, got {out}")
    return sorted(set(out))


def _check_sim_method(sim_method: Any, Ns: list[int]) -> dict[int, str]:
    """Return the simulation method of each N: one for all, or a mapping N -> method."""
    from .simulation import METHODS

    if isinstance(sim_method, str):
        chosen = dict.fromkeys(Ns, sim_method)
    elif isinstance(sim_method, Mapping):
        given = {check_int("sim_method key", n, ge=1): m for n, m in sim_method.items()}
        extra = sorted(set(given) - set(Ns))
        if extra:
            raise ValueError(f"sim_method names N = {extra}, which are not among Ns = {Ns}")
        chosen = {n: given.get(n, "weights") for n in Ns}
    else:
        raise TypeError(f"sim_method must be 'weights', 'gram' or a mapping N -> method, got "
                        f"{type(sim_method).__name__}")
    bad = sorted({m for m in chosen.values() if m not in METHODS}, key=str)
    if bad:
        raise ValueError(f"sim_method must be among {METHODS}, got {bad[0]!r}")
    return chosen


def compare(p: Params, Ns: Sequence[int] | ArrayLike = (1000, 4000, 16000),
            t_max: float = 20.0, replicas: int = 8,
            init: Mapping[str, ArrayLike] | xr.Dataset | None = None,
            record_every: float = 0.1, seed: int = 0, threads: int | None = None,
            progress: bool = False, *, variables: Sequence[str] = VARIABLES,
            method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10,
            sim_method: str | Mapping[int, str] = "weights",
            simulate_fn: SimulateFn | None = None) -> Comparison:
    """Run SGD at several N and the ODE from the same start; measure the gap vs N.

    Parameters
    ----------
    p : Params
        Model and SGD parameters.
    Ns : sequence of int
        Input dimensions, at least two distinct.
    t_max, record_every : float
        Simulated time and recording interval (t = steps / N).
    replicas : int
        Independent SGD runs per N.
    init : dict or xarray.Dataset, optional
        Prescribed start (docs/model.md#initial-states) shared by SGD and ODE; default
        :func:`linvae.states.overlap_state`. The random start is refused: its ODE limit
        m = d = 0 is invariant, so the gap would measure the escape time, not N^-1/2.
    seed : int
        Base seed; the i-th N (ascending) uses ``seed + i``.
    threads, progress
        Passed to the simulation.
    variables : sequence of str
        Which of :data:`VARIABLES` to measure.
    method, rtol, atol
        ODE solver settings (see :func:`linvae.ode.integrate`).
    sim_method : "weights", "gram" or mapping N -> method
        How the SGD runs are simulated (``method`` of :func:`linvae.simulate`): the
        weights themselves, or the Gram chain, the exact finite-N law at a cost
        independent of N. A mapping sets it per N; the N it leaves out use "weights".
    simulate_fn : callable, optional
        Stand-in for :func:`linvae.simulate` with the same signature (for tests).

    Returns
    -------
    Comparison

    Notes
    -----
    The cost is that of the simulations, ~ replicas * t_max * N^2 * M with the weights:
    the defaults take several minutes on two cores (about 7 min for (M, M*) = (2, 2));
    Ns = (1000, 8000) with t_max = 5 and 4 replicas takes seconds and already shows the
    N^-1/2 law. The Gram chain costs ~ replicas * t_max * N * (M* + 2M)^2, about 55 ns
    per step for M = M* = 1: N = 1e7 with t_max = 10 is about 5 s per replica. The
    predicted spread is one integration of the covariance equation (well under a second);
    if it fails, ``spread`` is None and the rest is unaffected.
    """
    p = check_params(p)
    Ns_ = _check_Ns(Ns)
    t_max = check_real("t_max", t_max, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0)
    if record_every > t_max:
        raise ValueError(f"record_every must be <= t_max={t_max:g}, got {record_every!r}")
    replicas = check_int("replicas", replicas, ge=1)
    seed = check_int("seed", seed, ge=0)
    bad = [v for v in variables if v not in VARIABLES]
    if isinstance(variables, str) or bad or not variables:
        raise ValueError(f"variables must be a non-empty subset of {VARIABLES}, got "
                         f"{variables!r}")
    if isinstance(init, str):
        raise TypeError(f"init must be a prescribed state (dict or dataset slice), got "
                         f"{init!r}: from the random start the ODE stays at m = d = 0 while "
                         f"SGD escapes after a time ~ log N, so the gap would not measure "
                         f"the N^-1/2 fluctuations; use linvae.states.overlap_state(p)")
    state = overlap_state(p) if init is None else parse_state(init, p, name="init")
    methods = _check_sim_method(sim_method, Ns_)
    if simulate_fn is None:
        from .simulation import simulate  # lazily: the compiled engine is optional here

        simulate_fn = cast(SimulateFn, simulate)  # called with the method names as str

    sims: dict[int, xr.Dataset] = {}
    per_N: list[xr.Dataset] = []
    n_div: dict[int, int] = {}
    ode_first: xr.Dataset | None = None
    for i, N in enumerate(Ns_):
        sim = simulate_fn(p, N, t_max, record_every, seeds=replicas, seed=seed + i,
                          init={k: v.copy() for k, v in state.items()}, threads=threads,
                          progress=progress, method=methods[N])
        t_sim = np.asarray(sim["t"].values, dtype=np.float64)
        # the ODE on the simulation's own grid: no interpolation error in the gap
        ode = integrate(p, t_max=max(float(t_sim[-1]), t_max), init=state,
                        record_every=record_every, method=method, rtol=rtol, atol=atol,
                        t_eval=t_sim)
        sims[N] = sim
        n_div[N] = int(np.sum(sim["diverged"].values)) if "diverged" in sim else 0
        if n_div[N] == sim.sizes.get("replica", 1):
            warnings.warn(f"all {n_div[N]} replicas diverged at N={N}; its gaps are NaN",
                          RuntimeWarning, stacklevel=2)
        per_N.append(gap_statistics(sim, ode, variables))
        if ode_first is None:
            ode_first = ode
    gaps = xr.concat(per_N, dim=xr.DataArray(Ns_, dims="N", name="N"))
    gaps["N"].attrs["long_name"] = "input dimension N"
    gaps = gaps.assign_coords(method=("N", [methods[n] for n in Ns_]))
    gaps.attrs.update(description="deviation of SGD replica trajectories from the ODE: "
                      "max and root-mean-square over replicas, recorded times and entries")
    exponents, prefactors = fit_exponents(gaps)
    assert ode_first is not None
    spread: xr.Dataset | None = None
    try:
        spread = spread_statistics(p, state, ode_first, sims, variables, rtol=rtol, atol=atol)
    except Exception as exc:  # noqa: BLE001 - the prediction is an extra; the gaps stand alone
        log.warning("compare: no predicted spread (%s: %s)", type(exc).__name__,
                    " ".join(str(exc).split())[:200])
    return Comparison(params=p, ode=ode_first, sims=sims, gaps=gaps, exponents=exponents,
                      prefactors=prefactors, n_diverged=n_div, methods=methods,
                      spread=spread)


def run_compare(p: Params, out: Path, *, Ns: Sequence[int], t_max: float, replicas: int,
                record_every: float, seed: int = 0, threads: int | None = None,
                init: Any = None, progress: bool = True, attrs: Mapping[str, Any] | None = None,
                stem: str = "compare", sim_method: str | Mapping[int, str] = "weights",
                show: Sequence[int] | None = None) -> tuple[Comparison, list[Path]]:
    """Run :func:`compare`, write its data and the trajectories + gap figure to ``out``.

    The figure has the predicted band ODE +- 2 sigma / sqrt(N) when
    :attr:`Comparison.spread` has it.

    ``sim_method`` is passed to :func:`compare`; ``show`` picks the N whose
    trajectories are drawn (default: all; the gap panel always has every N).
    """
    from . import io
    from .plot import save_figure

    io.check_output_folder(out)  # before the simulations, not after
    cmp = compare(p, Ns=Ns, t_max=t_max, replicas=replicas, init=init,
                  record_every=record_every, seed=seed, threads=threads, progress=progress,
                  sim_method=sim_method)
    data = comparison_data(cmp, stem=stem, replicas=replicas, t_max=t_max, attrs=attrs)
    files = [io.save(ds, out / name) for name, ds in data.items()]
    fig = plot_comparison(cmp, replicas=replicas, show=show)
    for suffix in (".png", ".pdf"):
        files.append(save_figure(fig, out / f"{stem}{suffix}"))
    return cmp, files


def comparison_data(cmp: Comparison, *, stem: str, replicas: int, t_max: float,
                    attrs: Mapping[str, Any] | None = None) -> dict[str, xr.Dataset]:
    """Return the data :func:`run_compare` writes, by file name.

    ``<stem>_ode.nc``, ``<stem>_sim_N<N>.nc`` per N and ``<stem>_gaps.nc`` (the gaps with
    the fitted ``exponent_<stat>`` and ``prefactor_<stat>``), each with ``attrs`` added.
    """
    extra = dict(attrs or {})
    ode = cmp.ode.copy()
    ode.attrs.update(extra)
    data = {f"{stem}_ode.nc": ode}
    for N, sim in cmp.sims.items():
        sim = sim.copy()
        sim.attrs.update(extra)
        data[f"{stem}_sim_N{N}.nc"] = sim
    gaps = cmp.gaps.copy()
    for stat in ("max", "rms"):
        gaps[f"exponent_{stat}"] = cmp.exponents[stat]
        gaps[f"prefactor_{stat}"] = cmp.prefactors[stat]
    gaps["variable"] = gaps["variable"].astype(str)
    gaps.attrs.update({**cmp.params.to_attrs(), **extra, "Ns": np.array(cmp.Ns),
                       "replicas": replicas, "t_max": t_max})
    data[f"{stem}_gaps.nc"] = gaps
    return data


def plot_comparison(cmp: Comparison, *, replicas: int,
                    show: Sequence[int] | None = None) -> Figure:
    """Return the figure of :func:`run_compare`: trajectories per variable and the gap vs N.

    ``show`` picks the N whose trajectories are drawn (default: all). The styles of the
    trajectories are explained once, in a legend under the panels.
    """
    from .plot import (
        BAND_SD,
        STANDARD,
        _draw_trajectories,
        apply_style,
        describe,
        figure,
        n_label,
        plot_gaps,
        style_context,
        suptitle,
    )

    variables = [v for v in STANDARD if v in cmp.ode]
    drawn = cmp.sims if show is None else {int(n): cmp.sims[int(n)] for n in show}
    with style_context():
        # a panel per variable; the last row has the gap vs N, twice as wide, in a
        # subfigure of its own (its legend on its right takes no room from the panels above)
        ncols = 3
        top, rest = variables[:ncols * ((len(variables) - 1) // ncols)], \
            variables[ncols * ((len(variables) - 1) // ncols):]
        nrows = len(top) // ncols
        fig = figure(ncols=ncols, nrows=nrows + 1, height=1.75, empty=True)
        if nrows:
            sub_top, sub_bottom = cast(Any, fig.subfigures(2, 1, height_ratios=[nrows, 1]))
        else:  # the gap panel's row alone
            sub_top = sub_bottom = cast(Any, fig)
        key: tuple[list[Any], list[str]] = ([], [])
        axes = [apply_style(sub_top.add_subplot(nrows, ncols, k + 1)) for k in range(len(top))]
        widths = [1] * len(rest) + [ncols - len(rest)]
        gs = sub_bottom.add_gridspec(1, len(widths), width_ratios=widths)
        axes += [apply_style(sub_bottom.add_subplot(gs[0, k])) for k in range(len(rest))]
        for ax, v in zip(axes, variables, strict=True):
            # the same styles in every panel: one legend for all
            drawn_key = _draw_trajectories(cmp.ode, drawn, v, None, ax, cmp.spread)
            key = key if key[0] else drawn_key
        gap_ax = apply_style(sub_bottom.add_subplot(gs[0, len(rest)]))
        plot_gaps(cmp.gaps, stat="rms", exponents=cmp.exponents, prefactors=cmp.prefactors,
                  ax=gap_ax)
        gap_ax.set_title("SGD–ODE gap vs $N$")
        gap_legend = gap_ax.get_legend()
        if gap_legend is not None:  # the panel is wide: its legend on its right
            gap_legend._linvae_outside = "right"  # type: ignore[attr-defined]
        if key[0]:
            try:
                fig.legend(*key, loc="outside lower center", ncols=min(len(key[1]), 3))
            except ValueError:  # matplotlib < 3.7: no "outside" places
                fig.legend(*key, loc="lower center", ncols=min(len(key[1]), 3))
        gram = [n for n in cmp.Ns if cmp.methods.get(n) == "gram"]
        how = f"; Gram chain at N = {', '.join(map(n_label, gram))}" if gram else ""
        suptitle(fig, f"SGD (mean ± {BAND_SD} sd over {replicas} replicas) vs ODE",
                 f"N = {', '.join(map(n_label, cmp.Ns))}{how}; "
                 f"{describe(cmp.params.to_attrs())}")
    return fig
