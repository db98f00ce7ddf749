"""The tasks a sweep runs at each point: one registry for the built-in and added ones.

The command line (``linvae sweep --task NAME``) offers every registered task and passes
it the settings it was registered to take from the command line. The built-in tasks
import what they run when first called, so that importing the sweeps stays light.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .hashing import PARAM_FIELDS

if TYPE_CHECKING:
    import xarray as xr

    from ..params import Params

#: Setting names a task receives from the sweep itself, never from the grid or the user.
_RESERVED = ("threads",)


@dataclass(frozen=True)
class _Task:
    name: str
    fn: Callable[..., xr.Dataset]
    settings: Mapping[str, inspect.Parameter]
    any_settings: bool  # fn takes **kwargs
    takes_threads: bool
    cli_settings: tuple[str, ...] = ()

    def check_settings(self, names: Sequence[str], where: str) -> None:
        for n in names:
            if n in PARAM_FIELDS:
                raise ValueError(f"{n!r} is a model parameter: set it in p "
                                 f"(p.replace({n}=...)) or make it a grid axis, not a {where}")
            if n in _RESERVED:
                raise ValueError(f"{n!r} is set by sweep itself (threads_per_task), not a {where}")
            if n not in self.settings and not self.any_settings:
                hint = "; use replicas" if n == "seeds" else ""
                raise ValueError(f"unknown {where} {n!r} for task {self.name!r}{hint}; "
                                 f"allowed: {', '.join(self.settings) or '(none)'}")

    def bind(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """All settings with the task's defaults filled in (what the hash covers)."""
        missing = [n for n, par in self.settings.items()
                   if par.default is inspect.Parameter.empty and n not in settings]
        if missing:
            raise ValueError(f"task {self.name!r} needs the setting(s) {', '.join(missing)}: "
                             f"give them as sweep(..., {missing[0]}=...) or as a grid axis")
        full = {n: par.default for n, par in self.settings.items()}
        full.update(settings)
        return full


_TASKS: dict[str, _Task] = {}


def register_task(name: str, fn: Callable[..., xr.Dataset], *, replace: bool = False,
                  cli_settings: Sequence[str] = ()) -> None:
    """Make ``fn`` available as ``sweep(task=name)`` and ``linvae sweep --task name``.

    Parameters
    ----------
    name : str
        Task name.
    fn : callable
        ``fn(params, **settings) -> xarray.Dataset``. Its keyword parameters (after the
        first, which receives the :class:`linvae.Params`) are the task's settings: they
        may be grid axes or fixed ``sweep(...)`` keywords; those without a default are
        required. A parameter named ``threads`` receives ``threads_per_task`` and is not
        part of the point hash. ``fn`` must be importable by worker processes (defined
        at module level; in the calling script only if it starts the sweep under
        ``if __name__ == "__main__":``, which :func:`sweep` checks for the local pool).
    replace : bool
        Allow replacing a task registered under the same name with another function.
    cli_settings : sequence of str
        Settings of ``fn`` that ``linvae sweep`` fills from its flags of the same name
        (``--N``, ``--t-max``, ``--record-every``, ``--seed``, ``--method``;
        ``replicas`` from ``--replicas`` as the grid's replicas). The others take
        ``fn``'s defaults unless they are grid axes.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(cli_settings, str) or not all(isinstance(n, str) for n in cli_settings):
        raise TypeError(f"cli_settings must be a sequence of setting names, got "
                        f"{cli_settings!r}")
    old = _TASKS.get(name)
    if old is not None and old.fn is not fn and not replace:
        raise ValueError(f"a task named {name!r} is already registered ({old.fn!r}); "
                         f"pass replace=True to replace it")
    sig = inspect.signature(fn)
    pars = list(sig.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not pars or pars[0].kind not in positional:
        raise TypeError(f"task {name!r}: fn must take the Params as its first positional "
                        f"argument, got signature {sig}")
    settings = {p.name: p for p in pars[1:]
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY) and p.name not in _RESERVED}
    task = _Task(name=name, fn=fn, settings=settings,
                 any_settings=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in pars),
                 takes_threads="threads" in sig.parameters, cli_settings=tuple(cli_settings))
    task.check_settings(task.cli_settings, "command-line setting")
    _TASKS[name] = task


def registered_tasks() -> tuple[str, ...]:
    """Names of the tasks :func:`sweep` can run, in the order they were registered."""
    return tuple(_TASKS)


def task_cli_settings(name: str) -> tuple[str, ...]:
    """Return the settings that ``linvae sweep --task name`` passes from its flags."""
    return _get_task(name).cli_settings


def _get_task(name: str) -> _Task:
    if not isinstance(name, str):
        raise TypeError(f"task must be a task name (str), got {type(name).__name__}")
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(_TASKS)} "
                         f"(add one with linvae.sweeps.register_task)")
    return _TASKS[name]


def _allowed_axes() -> tuple[str, ...]:
    names = list(PARAM_FIELDS)
    for task in _TASKS.values():
        names += [n for n in task.settings if n not in names and n != "replicas"]
    return tuple(names)


# ---------------------------------------------------------------------------------------
# the built-in tasks
# ---------------------------------------------------------------------------------------
def _simulate_task(params: Params, *, N: int, t_max: float, record_every: float = 0.1,
                   replicas: int = 1, seed: int = 0, init: Any = "random",
                   dtype: str = "float64", times: Any = None, blowup: float = 1e8,
                   threads: int | None = None, method: str = "weights") -> xr.Dataset:
    """Task "simulate": :func:`linvae.simulate` with ``seeds=replicas``, no progress bar."""
    from ..simulation import simulate

    return simulate(params, N, t_max, record_every, seeds=replicas, seed=seed, init=init,
                    threads=threads, dtype=dtype,  # type: ignore[arg-type]
                    progress=False, times=times, blowup=blowup,
                    method=method)  # type: ignore[arg-type]


def _ode_task(params: Params, *, t_max: float = 20.0, init: Any = None,
              record_every: float = 0.1, method: str = "auto", rtol: float = 1e-8,
              atol: float = 1e-10, t_eval: Any = None, on_unphysical: str = "raise",
              psd_tol: float = 1e-8) -> xr.Dataset:
    """Task "ode": :func:`linvae.integrate`.

    ``init`` may also be a number, the overlap of :func:`linvae.ode.overlap_state`
    (default: that state with overlap 0.5).
    """
    from ..ode import integrate, overlap_state

    if isinstance(init, (int, float)) and not isinstance(init, bool):
        init = overlap_state(params, init)
    return integrate(params, t_max, init, record_every, method, rtol, atol, t_eval=t_eval,
                     on_unphysical=on_unphysical,  # type: ignore[arg-type]
                     psd_tol=psd_tol)


def _stability_task(p: Params, thresholds: bool = True) -> xr.Dataset:
    """Task "stability": the stable fixed point of ``p`` as one dataset.

    Holds the fixed point's order parameters (dims as in simulation results), eps_g,
    rate, loss, the largest real part of the Jacobian's eigenvalues (``max_real``; -1/it
    is the slowest time scale), how many fixed points were found, and, with
    ``thresholds``, the numerically found collapse threshold of every factor
    (:func:`linvae.stability.collapse_thresholds`: NaN for a factor without a latent,
    M < M*). Where no fixed point is stable (tau beyond the step-size limit) ``stable``
    is False and the state is NaN: that is data about the grid point, not a failure.
    """
    import numpy as np
    import xarray as xr

    from ..stability import collapse_thresholds, fixed_point_data, fixed_points

    fps = fixed_points(p)
    stable = [f for f in fps if f.stable]
    fp = stable[0] if stable else None
    data = fixed_point_data([fp], p, fields=("eg", "rate", "loss", "max_real"))
    data["stable"] = ((), fp is not None)
    data["n_fixed_points"] = ((), len(fps))
    if thresholds:
        data["collapse_threshold"] = (("factor",), np.array(
            [float(t) for t in collapse_thresholds(p)]))
    return xr.Dataset(data, coords={"latent": np.arange(p.M), "latent2": np.arange(p.M),
                                    "factor": np.arange(p.M_star)},
                      attrs={**p.to_attrs(), "kind": "stability"})


register_task("simulate", _simulate_task,
              cli_settings=("N", "t_max", "record_every", "seed", "method", "replicas"))
register_task("ode", _ode_task, cli_settings=("t_max", "record_every"))
register_task("stability", _stability_task)
