"""The grid of a sweep: axes of model parameters and task settings, cartesian or zipped."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import check_int
from ..schedules import Schedule
from .hashing import PARAM_FIELDS, _canonical_json, _decode, _encode, _xarray
from .tasks import _allowed_axes

#: Dims of the result datasets, which grid dims must not reuse.
_DATA_DIMS = ("replica", "t", "latent", "latent2", "factor")


def _label(value: Any) -> Any:
    """Return a scalar coordinate label for a grid value."""
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, Schedule):
        return repr(value)
    return json.dumps(_encode(value))


def _coordinate(values: Sequence[Any]) -> np.ndarray:
    """Grid values as a 1-d coordinate: numbers or strings (non-scalars by their label)."""
    labels = [_label(v) for v in values]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels)
    if all(isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=bool)
    return np.asarray([str(v) for v in labels])


@dataclass(frozen=True)
class _Block:
    """One grid dimension: a single axis, or several zipped axes along one dim."""

    dim: str
    axes: dict[str, list[Any]]
    zipped: bool

    @property
    def size(self) -> int:
        return len(next(iter(self.axes.values())))


def _check_axis(name: str, values: Any) -> list[Any]:
    if name not in _allowed_axes():
        raise ValueError(f"unknown grid axis {name!r}; allowed: model parameters "
                         f"{', '.join(PARAM_FIELDS)} and run settings "
                         f"{', '.join(_allowed_axes()[len(PARAM_FIELDS):])} "
                         f"(replicas is a separate keyword)")
    xr = _xarray()
    array = isinstance(values, np.ndarray) or (xr is not None and isinstance(values, xr.DataArray))
    if isinstance(values, (str, bytes, Mapping)) or not (
            array or isinstance(values, (Sequence, range))):
        raise TypeError(f"grid axis {name!r} must be a sequence of values, got "
                        f"{type(values).__name__} {values!r}; wrap a single value in a list, "
                        f"or pass a fixed setting to sweep(...) instead")
    out = list(values.tolist() if array else values)
    if not out:
        raise ValueError(f"grid axis {name!r} is empty")
    for v in out:
        _encode(v, f"grid axis {name!r} value")
    return out


def _check_unique(what: str, rows: Sequence[Any]) -> None:
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = _canonical_json(row)
        if key in seen:
            raise ValueError(f"{what} has a repeated value {row!r} (positions {seen[key]} "
                             f"and {i}); every grid point must be distinct")
        seen[key] = i


class Grid:
    """Points of a parameter sweep: a cartesian product of axes, zipped axes, or both.

    Parameters
    ----------
    replicas : int, optional
        Number of independent replicas per point (``seeds`` of :func:`linvae.simulate`);
        default 1. Only for tasks that take a ``replicas`` setting.
    **axes : sequence
        Axis name -> values. A name is a :class:`linvae.Params` field (M, M_star, rho,
        eta, beta, lam, tau) or a run setting of a task (N, t_max, seed, record_every,
        ...). ``Grid(beta=[...], N=[...])`` is their cartesian product, one dim per axis,
        in the order given.

    Examples
    --------
    >>> g = Grid(beta=[0.5, 1.0, 1.5, 2.5], N=[1_000, 10_000], replicas=8)
    >>> g.dims, g.shape, len(g)
    (('beta', 'N'), (4, 2), 8)
    >>> z = Grid.zip(beta=[0.5, 1.0], rho=[1.0, 2.0])       # 2 points along dim "point"
    >>> (z * Grid(N=[500, 1000])).shape                     # zipped x cartesian
    (2, 2)
    """

    __slots__ = ("_blocks", "_replicas")

    def __init__(self, *, replicas: int | None = None, **axes: Any) -> None:
        blocks = []
        for name, values in axes.items():
            vals = _check_axis(name, values)
            _check_unique(f"grid axis {name!r}", vals)
            blocks.append(_Block(dim=name, axes={name: vals}, zipped=False))
        self._init(blocks, replicas)

    def _init(self, blocks: Sequence[_Block], replicas: int | None) -> None:
        names = [n for b in blocks for n in b.axes]
        dims = [b.dim for b in blocks]
        for seen, what in ((names, "axis"), (dims, "dim")):
            dup = sorted({n for n in seen if seen.count(n) > 1})
            if dup:
                raise ValueError(f"grid {what} {dup[0]!r} appears more than once")
        self._blocks: tuple[_Block, ...] = tuple(blocks)
        self._replicas = None if replicas is None else check_int("replicas", replicas, ge=1)

    @classmethod
    def zip(cls, *, dim: str = "point", replicas: int | None = None, **axes: Any) -> Grid:
        """Axes varied together (like the built-in zip) along the single dim ``dim``.

        All axes must have the same length; point i takes value i of every axis.
        """
        if not isinstance(dim, str) or not dim.isidentifier():
            raise ValueError(f"dim must be an identifier, got {dim!r}")
        if dim in _DATA_DIMS or dim in _allowed_axes():
            raise ValueError(f"dim must not be a dataset dim or an axis name, got {dim!r}")
        if not axes:
            raise ValueError("Grid.zip needs at least one axis")
        checked = {n: _check_axis(n, v) for n, v in axes.items()}
        lengths = {n: len(v) for n, v in checked.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zipped axes must have equal lengths, got "
                             f"{', '.join(f'{n}: {k}' for n, k in lengths.items())}")
        _check_unique(f"zipped axes ({', '.join(checked)})",
                      [list(row) for row in zip(*checked.values(), strict=True)])
        grid = cls.__new__(cls)
        grid._init([_Block(dim=dim, axes=checked, zipped=True)], replicas)
        return grid

    def __mul__(self, other: Grid) -> Grid:
        """Cartesian product of two grids (dims of ``self`` first)."""
        if not isinstance(other, Grid):
            return NotImplemented
        if None not in (self._replicas, other._replicas) and self._replicas != other._replicas:
            raise ValueError(f"the grids have different replicas ({self._replicas} and "
                             f"{other._replicas})")
        grid = Grid.__new__(Grid)
        grid._init([*self._blocks, *other._blocks],
                   self._replicas if self._replicas is not None else other._replicas)
        return grid

    # -- views -------------------------------------------------------------------------
    @property
    def replicas(self) -> int | None:
        """Replicas per point (None for the task's default)."""
        return self._replicas

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names, one per cartesian axis or zipped group."""
        return tuple(b.dim for b in self._blocks)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of points along each dim."""
        return tuple(b.size for b in self._blocks)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all axes (parameters and settings the grid varies)."""
        return tuple(n for b in self._blocks for n in b.axes)

    @property
    def axes(self) -> dict[str, list[Any]]:
        """Axis name -> values (copies)."""
        return {n: list(v) for b in self._blocks for n, v in b.axes.items()}

    def __len__(self) -> int:
        return math.prod(self.shape)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield the points in row-major order (last dim fastest), as axis name -> value."""
        for idx in itertools.product(*(range(b.size) for b in self._blocks)):
            yield {n: v[i] for b, i in zip(self._blocks, idx, strict=True)
                   for n, v in b.axes.items()}

    def coords(self) -> dict[str, Any]:
        """Return the xarray coordinates of the grid dims (zipped axes as non-index coordinates)."""
        out: dict[str, Any] = {}
        for b in self._blocks:
            if b.zipped:
                out[b.dim] = np.arange(b.size)
                for n, v in b.axes.items():
                    out[n] = (b.dim, _coordinate(v))
            else:
                ((n, v),) = b.axes.items()
                out[n] = _coordinate(v)
        return out

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; :meth:`from_dict` inverts it."""
        return {"replicas": self._replicas,
                "blocks": [{"dim": b.dim, "zipped": b.zipped,
                            "axes": {n: _encode(v) for n, v in b.axes.items()}}
                           for b in self._blocks]}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Grid:
        """Rebuild a grid from :meth:`to_dict` output."""
        grid = cls.__new__(cls)
        grid._init([_Block(dim=b["dim"], zipped=bool(b["zipped"]),
                           axes={n: _decode(v) for n, v in b["axes"].items()})
                    for b in spec["blocks"]], spec.get("replicas"))
        return grid

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return _canonical_json(self.to_dict()) == _canonical_json(other.to_dict())

    def __hash__(self) -> int:
        return hash(_canonical_json(self.to_dict()))

    def __repr__(self) -> str:
        parts = []
        for b in self._blocks:
            ax = ", ".join(f"{n}={v!r}" if len(v) <= 6 else f"{n}=[{len(v)} values]"
                           for n, v in b.axes.items())
            parts.append(f"zip({ax})" if b.zipped else ax)
        rep = "" if self._replicas is None else f", replicas={self._replicas}"
        return f"Grid({' x '.join(parts)}{rep}; {len(self)} points)"
