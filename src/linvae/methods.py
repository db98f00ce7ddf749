"""How :func:`linvae.simulate` simulates SGD: the methods, as option objects.

A method is a frozen dataclass that holds its own options, checks what it can run
(:meth:`Method.check`) and builds the compiled engine that runs it
(:meth:`Method.engine`):

* :class:`Weights`: SGD itself on the N-vectors W and V (cost per step ~ N), in float64
  or float32;
* :class:`Gram`: the Gram chain of docs/model.md#gram-chain, the exact finite-N law of
  the order parameters at a cost per step independent of N (Gaussian data, float64).

:data:`METHODS` is the one registry of them by name: ``simulate(method="gram")`` is
``simulate(method=Gram())``, and the command line's ``--method`` offers its names.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from . import _core
from .observables import shapes_of

if TYPE_CHECKING:
    from .data import DataSpec
    from .params import Params

__all__ = ["DTYPES", "METHODS", "Gram", "Method", "Weights", "as_method", "available_memory",
           "record_bytes"]

#: Precisions of the weights of :class:`Weights`.
DTYPES = ("float64", "float32")


def _check_dtype(dtype: Any) -> None:
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype must be {' or '.join(map(repr, DTYPES))}, got {dtype!r}")


@dataclass(frozen=True)
class Method(ABC):
    """A way of simulating SGD, with its options (the base of :class:`Weights`, :class:`Gram`)."""

    #: The method's name in :data:`METHODS` and in the dataset's ``method`` attribute.
    name: ClassVar[str]

    def check(self, p: Params, N: int, data: DataSpec) -> None:  # noqa: B027 - a no-op hook
        """Raise ValueError if the method cannot run model ``p`` at dimension ``N`` on ``data``.

        The arguments are the checked ones of :func:`linvae.simulate`; the default
        method runs anything they allow.
        """

    @abstractmethod
    def weight_bytes(self, p: Params, N: int, replicas: int, data: DataSpec) -> float:
        """Return the bytes the engine holds for ``replicas`` replicas (about)."""

    @abstractmethod
    def engine(self, p: Params, N: int, *, replicas: int, seed: int, data: DataSpec,
               blowup: float) -> Any:
        """Return the compiled engine of this method, for checked arguments.

        The compiled constructor checks sizes again (but not what :meth:`check` does).
        """


@dataclass(frozen=True)
class Weights(Method):
    """SGD on the N-vectors W and V themselves (cost per step ~ N).

    Parameters
    ----------
    dtype : "float64" or "float32"
        Precision of the weights. float32 updates them in float arithmetic and draws
        float normals (its trajectories are not the float64 ones rounded, but follow the
        same ODE with the same N^-1/2 fluctuations); about 1.7x faster, half the memory.
    """

    name: ClassVar[str] = "weights"
    dtype: Literal["float64", "float32"] = "float64"

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)

    def weight_bytes(self, p: Params, N: int, replicas: int, data: DataSpec) -> float:
        """W, V, W*, x and the streams of each replica, and a shuffled epoch's order."""
        itemsize = 8 if self.dtype == "float64" else 4
        per = (2 * p.M + p.M_star + 1) * N * itemsize + 40 * N
        if data.dataset_size is not None and data.order == "shuffle":
            per += 4 * min(data.dataset_size, 2**22)
        return float(replicas * per)

    def engine(self, p: Params, N: int, *, replicas: int, seed: int, data: DataSpec,
               blowup: float) -> Any:
        """Return ``_core.Engine64`` or ``_core.Engine32`` (by ``dtype``)."""
        cls = _core.Engine64 if self.dtype == "float64" else _core.Engine32
        return cls(N=N, params=p._to_core(), blowup=blowup, seed=seed, replicas=replicas,
                   **data.engine_options(seed))


@dataclass(frozen=True)
class Gram(Method):
    """The Gram chain: the exact finite-N law of the order parameters (docs/model.md#gram-chain).

    Its cost per step does not depend on N (about 55 ns for M = M* = 1). It needs
    Gaussian noise and factors, a fresh sample every step, float64 and N >= M* + 2M. Its
    trajectories have the same law as those of :class:`Weights`, but the same seed gives
    another (equally distributed) trajectory.

    Parameters
    ----------
    compensated : bool
        Add each step's O(1/N) increment to G and D with a compensated sum (default),
        so that 1e10 steps at N = 1e9 do not accumulate 1e10 roundings; False: plain
        sums.
    """

    name: ClassVar[str] = "gram"
    compensated: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.compensated, bool):
            raise TypeError(f"compensated must be True or False, got "
                            f"{type(self.compensated).__name__} {self.compensated!r}")

    def weight_bytes(self, p: Params, N: int, replicas: int, data: DataSpec) -> float:
        """G and its compensation terms, whatever N."""
        K = p.M_star + 2 * p.M
        return float(replicas * 2 * K * K * 8)

    def check(self, p: Params, N: int, data: DataSpec) -> None:
        """Refuse non-Gaussian data, a finite dataset, and N < M* + 2M."""
        if data.noise != "gaussian" or data.factors != "gaussian":
            bad = (f"noise={data.noise!r}" if data.noise != "gaussian"
                   else f"factors={data.factors!r}")
            raise ValueError(f"method='gram' needs Gaussian noise and factors, got {bad}: the "
                             f"Gram chain is exact only for Gaussian data (use method='weights')")
        if data.dataset_size is not None:
            raise ValueError(f"method='gram' draws a fresh sample every step, so it cannot "
                             f"train on dataset_size={data.dataset_size} "
                             f"(use method='weights')")
        K = p.M_star + 2 * p.M  # columns of [W*, W, V]
        if N < K:
            raise ValueError(f"method='gram' needs N >= M_star + 2 M = {K}, got {N}")

    def engine(self, p: Params, N: int, *, replicas: int, seed: int, data: DataSpec,
               blowup: float) -> Any:
        """Return ``_core.GramEngine``."""
        return _core.GramEngine(N=N, params=p._to_core(), blowup=blowup, seed=seed,
                                replicas=replicas, **data.engine_options(seed),
                                compensated=self.compensated)


def record_bytes(p: Params, replicas: int, T: float) -> float:
    """Return the bytes of ``T`` records of every order parameter of ``replicas`` replicas."""
    per = sum(math.prod(s) for s in shapes_of(p.M, p.M_star).values())
    return T * (replicas * per + 2) * 8


def available_memory() -> float:
    """Return the bytes of memory available now (inf where the system does not say)."""
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return math.inf


#: The simulation methods by name, what ``simulate(method=<name>)`` and ``--method`` take.
METHODS: dict[str, type[Method]] = {"weights": Weights, "gram": Gram}


def as_method(method: str | Method, dtype: str | None = None) -> Method:
    """Return the :class:`Method` that ``simulate(method=..., dtype=...)`` asks for.

    ``method`` is a name of :data:`METHODS` (with ``dtype``, the precision of
    :class:`Weights`; the others run in float64 only) or a :class:`Method` object, which
    holds its own options: ``dtype`` must then be left out (None or its default,
    "float64").
    """
    if isinstance(method, Method):
        if dtype is not None and not (isinstance(dtype, str) and dtype == "float64"):
            raise TypeError(f"dtype={dtype!r} goes with a method name only: "
                            f"method={method!r} holds its own options (e.g. "
                            f"method=Weights(dtype='float32'))")
        return method
    dtype = "float64" if dtype is None else dtype
    _check_dtype(dtype)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be {' or '.join(map(repr, METHODS))}, got {method!r}")
    if method == Weights.name:
        return Weights(dtype=dtype)  # type: ignore[arg-type]  # checked above
    if dtype != "float64":
        raise ValueError(f"method={method!r} runs in float64 only, got dtype={dtype!r} "
                         f"(its cost does not depend on N, so float32 would gain nothing)")
    return METHODS[method]()
