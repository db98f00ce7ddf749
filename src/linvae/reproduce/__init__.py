"""``linvae reproduce``: every figure family of the paper, with its data and a summary.

Each family is a module of this package that registers a :class:`FigureFamily` (see
:mod:`linvae.reproduce.registry`), and is written as ``<name>.png`` and ``<name>.pdf``
with its data (netCDF, via :func:`linvae.io.save`) next to it, in the registry's order:
``sgd_vs_ode``, ``collapse``, ``superfluous``, ``annealing``, ``disentanglement``,
``optimal_beta``, ``fluctuations``, ``universality``, ``finite_data`` and
``finite_data_statics`` (each module's docstring says what it draws). :func:`register` adds a family of one's own, which
:func:`reproduce` then runs like these.

A family that fails is recorded (with its error) in ``summary.md`` and the others still
run; :func:`reproduce` returns a :class:`Report`.
"""


from __future__ import annotations

import logging
import os
import platform
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import io
from .._moved import forward
from ..plot import save_figure

# the built-in families register themselves on import, in this order
# isort: off
from . import sgd_vs_ode, collapse, superfluous, annealing, disentanglement
from . import optimal_beta, fluctuations, universality, finite_data, finite_data_statics
# isort: on
from .registry import (
    Data,
    FigureFamily,
    Settings,
    families,
    get,
    names,
    number,
    register,
    table,
    unregister,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FAMILIES", "Data", "Family", "FigureFamily", "Report", "Settings", "families",
           "get", "names", "register", "reproduce", "table", "unregister"]

log = logging.getLogger("linvae")

#: The built-in figure families, in order (:func:`names` adds those registered since).
FAMILIES = tuple(m.FAMILY.name for m in (sgd_vs_ode, collapse, superfluous, annealing,
                                         disentanglement, optimal_beta, fluctuations,
                                         universality, finite_data, finite_data_statics))

#: Names that used to live here: the module that has them now (the command line uses
#: them too, and it does not depend on this script).
_MOVED = {"run_compare": "comparison"}


if TYPE_CHECKING:  # type checkers see the moved names, and no __getattr__ hiding typos
    from ..comparison import run_compare  # noqa: F401 - for type checkers
else:
    __getattr__ = forward(__name__, _MOVED)


@dataclass
class Family:
    """Outcome of one figure family."""

    name: str
    ok: bool = False
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # summary.md rows
    error: str = ""


@dataclass
class Report:
    """Outcome of a :func:`reproduce` run: the output folder, the mode and each family."""

    out: Path
    quick: bool
    families: list[Family]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every figure family succeeded."""
        return all(f.ok for f in self.families)


def _figures(family: FigureFamily[Any], drawn: Figure | Mapping[str, Figure]
             ) -> dict[str, Figure]:
    """Return the family's figures by file stem: one figure is ``<name>``."""
    return dict(drawn) if isinstance(drawn, Mapping) else {family.name: drawn}


def _run(family: FigureFamily[Any], out: Path, settings: Settings, progress: bool,
         threads: int | None) -> Family:
    """Compute, write the data, draw and save each figure, and summarise one family."""
    fam = Family(family.name)
    data: Data = family.compute(settings, progress=progress, threads=threads)
    fam.files += [io.save(ds, out / key) for key, ds in data.items() if key.endswith(".nc")]
    for stem, fig in _figures(family, family.plot(data, settings)).items():
        fam.files += [save_figure(fig, out / f"{stem}{suffix}") for suffix in (".png", ".pdf")]
    fam.lines = [f"Parameters: {family.parameters(data, settings)}",
                 *family.summary(data, settings)]
    return fam


def _attributed(name: str, caught: Sequence[warnings.WarningMessage]) -> None:
    """Show the warnings of figure family ``name``, each naming the family.

    A family that names its points (universality: the data family and N) is shown as
    it is; the per-replica DivergenceWarnings of :func:`linvae.simulate` that no family
    summarised are said once for the family, with their count and the first of them.
    """
    from ..errors import DivergenceWarning

    diverged: list[str] = []
    seen: dict[Any, Any] = {}  # a warning repeated at one place is shown once
    for w in caught:
        text = str(w.message)
        if text.startswith(name):
            shown = text
        elif issubclass(w.category, DivergenceWarning) and text.startswith("replica "):
            diverged.append(text.split("; it was stopped")[0])
            continue
        else:
            shown = f"{name}: {text}"
        warnings.warn_explicit(shown, w.category, w.filename, w.lineno, registry=seen)
    if diverged:
        warnings.warn(f"{name}: {len(diverged)} replica(s) diverged in its runs, the first "
                      f"{diverged[0]}; their records after it are NaN", DivergenceWarning,
                      stacklevel=3)


def _run_family(family: FigureFamily[Any], out: Path, settings: Settings, progress: bool,
                threads: int | None) -> Family:
    """:func:`_run`, recording a failure (with where it happened) instead of raising it.

    The family's warnings are shown after it, each naming it (:func:`_attributed`).
    """
    name = family.name
    log.info("figure family %s ...", name)
    t0 = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            fam = _run(family, out, settings, progress, threads)
        fam.ok = True
    except Exception as exc:  # noqa: BLE001 - one family's failure must not stop the others
        fam = Family(name, ok=False)
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        fam.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"
        log.error("figure family %s failed: %s", name, fam.error)
    _attributed(name, caught)
    fam.seconds = time.perf_counter() - t0
    if fam.ok:
        log.info("figure family %s done in %.1f s", name, fam.seconds)
    return fam


def _write_summary(report: Report) -> Path:
    import linvae

    mode = "--quick" if report.quick else "default"
    lines = ["# linvae reproduce: summary", "",
             (f"linvae {linvae.__version__}, settings: {mode}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}."),
             f"Total run time: **{report.seconds:.1f} s**.", "",
             "| family | status | time (s) | figures |", "|---|---|---|---|"]
    for f in report.families:
        figs = ", ".join(p.name for p in f.files if p.suffix in (".png", ".pdf"))
        status = "ok" if f.ok else "**FAILED**"
        lines.append(f"| {f.name} | {status} | {f.seconds:.1f} | {figs or '-'} |")
    for f in report.families:
        lines += ["", f"## {number(f.name)}. {get(f.name).title}", ""]
        if f.ok:
            lines += f.lines
            data = [p.name for p in f.files if p.suffix == ".nc"]
            lines += ["", f"Data: {', '.join(data)}"]
        else:
            lines.append(f"FAILED: `{f.error}`")
    path = report.out / "summary.md"
    io.write_text(path, "\n".join(lines) + "\n")
    return path


def reproduce(out: str | os.PathLike[str] = "linvae-reproduce", *, quick: bool = False,
              progress: bool = True, threads: int | None = None,
              only: Sequence[str] | None = None) -> Report:
    """Regenerate the figure families into ``out`` (created if missing).

    Parameters
    ----------
    out : path
        Output folder: ``<family>.png``, ``<family>.pdf``, the data as netCDF, and
        ``summary.md``.
    quick : bool
        Smaller N, fewer replicas and grid points (about 45 s on 2 cores, against about
        340 s).
    progress : bool
        Progress bars for the simulations.
    threads : int, optional
        OpenMP threads of the simulations.
    only : sequence of str, optional
        Subset of the registered families (:func:`names`), run in the order given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    out = io.check_output_folder(out)  # before hours of work, not after
    out.mkdir(parents=True, exist_ok=True)
    registered = names()
    chosen = list(registered) if only is None else list(only)
    bad = [n for n in chosen if n not in registered]
    if bad:
        raise ValueError(f"only must be among {registered}, got {bad}")
    mode = "quick" if quick else "full"
    log.info("reproducing %s into %s (%s settings)", ", ".join(chosen), out,
             "quick" if quick else "default")
    t0 = time.perf_counter()
    fams = [_run_family(f, out, f.settings(mode), progress, threads)
            for f in map(get, chosen)]
    report = Report(out=out, quick=quick, families=fams, seconds=time.perf_counter() - t0)
    path = _write_summary(report)
    log.info("wrote %s (%d of %d families ok, %.1f s)", path,
             sum(f.ok for f in fams), len(fams), report.seconds)
    return report
