"""The registry of figure families: what each declares, and the order they run in.

A family is a :class:`FigureFamily`: its name (the stem of its files), its title (the
heading of its section of ``summary.md``, numbered by its place in the registry), its
settings (one frozen dataclass derived from :class:`Settings`, with a ``quick`` and a
``full`` instance, and optionally a ``tiny`` one for tests), and three functions:

* ``compute(settings, progress=..., threads=...)`` returns its :data:`Data`: datasets by
  file name; those named ``*.nc`` are written as netCDF, in order, the others are kept
  in memory for the figure and the summary only;
* ``plot(data, settings)`` returns its figure (written as ``<name>.png`` and
  ``<name>.pdf``) or a mapping of file stems to figures;
* ``parameters(data, settings)`` returns the text of the summary's "Parameters:" line
  and ``summary(data, settings)`` the Markdown lines after it.

:func:`register` adds a family after those registered before it; ``linvae reproduce``
and its command line (``--only``, the help) run them in that order.
"""


from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["Data", "FigureFamily", "Settings", "families", "get", "names", "register",
           "table", "unregister"]

#: Datasets by file name. ``*.nc`` entries are written, in order; the others stay in memory.
Data = dict[str, "xr.Dataset"]


class Settings:
    """Base of a family's settings: a frozen dataclass whose fields take no defaults.

    Each value is checked against its field's annotation when an instance is built
    (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``tuple[X, ...]``, classes such as
    :class:`numpy.ndarray`, and unions of them), so that a quick or full instance with a
    missing or mistyped field fails when its module is imported, not in the long run.
    """

    def __post_init__(self) -> None:
        """Check every field's value against its annotation."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not _conforms(value, hints[f.name]):
                raise TypeError(f"{type(self).__name__}.{f.name} must be "
                                f"{_type_name(hints[f.name])}, got {value!r} "
                                f"({type(value).__name__})")


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _conforms(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the type ``tp`` (annotations a settings field may have)."""
    if tp is Any:
        return True
    if tp is float:  # an integer is a real number too, but a bool is not
        return isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_conforms, value, args))
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if isinstance(origin, type):  # e.g. NDArray[np.float64]: the container's class
        return isinstance(value, origin)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation this check does not know: not checked


S = TypeVar("S", bound=Settings)
S_contra = TypeVar("S_contra", bound=Settings, contravariant=True)


class Compute(Protocol[S_contra]):
    """A family's ``compute``: its data from its settings."""

    def __call__(self, settings: S_contra, /, *, progress: bool,
                 threads: int | None) -> Data:
        """Return the family's data (datasets by file name)."""


@dataclasses.dataclass(frozen=True)
class FigureFamily(Generic[S]):
    """A figure family: its name, title, settings and its compute, plot and summary.

    Attributes
    ----------
    name : str
        Identifier, the stem of its files and its name on the command line.
    title : str
        Heading of its section of ``summary.md`` (after its number in the registry).
    about : str
        One phrase for the command line's help.
    quick, full : Settings
        The settings of ``linvae reproduce --quick`` and of the default run: two instances
        of one frozen :class:`Settings` dataclass.
    compute : callable
        ``compute(settings, progress=bool, threads=int | None) -> Data``.
    plot : callable
        ``plot(data, settings)``: a figure, or a mapping of file stems to figures.
    parameters : callable
        ``parameters(data, settings)``: the text of the summary's "Parameters:" line.
    summary : callable
        ``summary(data, settings)``: the Markdown lines after it.
    tiny : Settings, optional
        Settings small enough for a test of compute and plot in a few seconds.
    """

    name: str
    title: str
    about: str
    quick: S
    full: S
    compute: Compute[S]
    plot: Callable[[Data, S], Figure | Mapping[str, Figure]]
    parameters: Callable[[Data, S], str]
    summary: Callable[[Data, S], list[str]]
    tiny: S | None = None

    def __post_init__(self) -> None:
        """Check the name and that the settings are instances of one frozen dataclass."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"a family's name is its files' stem: lower-case letters, digits "
                             f"and _, got {self.name!r}")
        cls = type(self.quick)
        if not (isinstance(self.quick, Settings) and dataclasses.is_dataclass(cls)
                and cls.__dataclass_params__.frozen):
            raise TypeError(f"family {self.name!r}: its settings must be a frozen dataclass "
                            f"derived from linvae.reproduce.Settings, got {cls.__name__}")
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING]
        if with_default:
            raise TypeError(f"family {self.name!r}: settings fields take no defaults, so that "
                            f"quick and full each state every one; {cls.__name__} has "
                            f"defaults for {with_default}")
        for which in ("full", "tiny"):
            other = getattr(self, which)
            if other is not None and type(other) is not cls:
                raise TypeError(f"family {self.name!r}: {which} settings are "
                                f"{type(other).__name__}, quick ones {cls.__name__}; one "
                                f"dataclass for both")

    def settings(self, mode: str) -> S:
        """Return the ``"quick"``, ``"full"`` or ``"tiny"`` settings (tiny: else quick)."""
        if mode not in ("quick", "full", "tiny"):
            raise ValueError(f"mode must be 'quick', 'full' or 'tiny', got {mode!r}")
        chosen: S | None = getattr(self, mode)
        return self.quick if chosen is None else chosen


_FAMILIES: dict[str, FigureFamily[Any]] = {}


def register(family: FigureFamily[S]) -> FigureFamily[S]:
    """Add ``family`` after those registered before it; return it.

    Raises
    ------
    ValueError
        If a family of that name is registered already (see :func:`unregister`).
    """
    if not isinstance(family, FigureFamily):
        raise TypeError(f"register takes a FigureFamily, got {type(family).__name__}")
    if family.name in _FAMILIES:
        raise ValueError(f"a figure family named {family.name!r} is registered already")
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> FigureFamily[Any]:
    """Remove the family ``name`` from the registry and return it."""
    return _FAMILIES.pop(get(name).name)


def get(name: str) -> FigureFamily[Any]:
    """Return the registered family ``name``."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"no figure family {name!r}; registered: {names()}") from None


def families() -> list[FigureFamily[Any]]:
    """Return the registered families, in order."""
    return list(_FAMILIES.values())


def names() -> tuple[str, ...]:
    """Return the names of the registered families, in order."""
    return tuple(_FAMILIES)


def number(name: str) -> int:
    """Return the place of the family ``name`` in the registry, from 1."""
    return names().index(get(name).name) + 1


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Return a Markdown table: the header, its rule and one line per row of cells."""
    return [_row(header), "|---" * len(header) + "|", *map(_row, rows)]


def _row(cells: Sequence[str]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"  # an empty cell: "| |"
