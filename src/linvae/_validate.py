"""Argument checks shared by every public entry point.

Each check names the parameter, the value it got and the rule it broke, so that a
mistake in a notebook or a config file is fixed from the message alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

_NUMBER = (int, float, np.integer, np.floating)


def check_real(name: str, value: Any, *, gt: float | None = None, ge: float | None = None,
               lt: float | None = None, le: float | None = None) -> float:
    """Return ``value`` as a finite float, or raise naming ``name`` and the rule broken."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}")
    for bound, ok, rule in ((gt, lambda b: x > b, ">"), (ge, lambda b: x >= b, ">="),
                            (lt, lambda b: x < b, "<"), (le, lambda b: x <= b, "<=")):
        if bound is not None and not ok(bound):
            raise ValueError(f"{name} must be {rule} {bound:g}, got {x!r}")
    return x


def check_int(name: str, value: Any, *, ge: int | None = None, le: int | None = None) -> int:
    """Return ``value`` as an int, or raise naming ``name`` and the rule broken."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    n = int(value)
    if ge is not None and n < ge:
        raise ValueError(f"{name} must be >= {ge}, got {n}")
    if le is not None and n > le:
        raise ValueError(f"{name} must be <= {le}, got {n}")
    return n


def parse_int(name: str, text: str, *, ge: int | None = None, le: int | None = None) -> int:
    """Parse an integer written as text (a command-line flag), checked as :func:`check_int`.

    Accepts what Python reads as an int ("10000", "10_000") or as an integral float
    ("1e4", "10000.0"), as :func:`check_int` accepts ``1e4``; "1.5" or "abc" is refused.
    """
    s = text.strip()
    try:
        value: Any = int(s)
    except ValueError:
        try:
            value = float(s)
        except ValueError:
            raise TypeError(f"{name} must be an integer, got {text!r}") from None
    return check_int(name, value, ge=ge, le=le)


def check_array(name: str, value: Any, shape: tuple[int, ...], *,
                gt: float | None = None, ge: float | None = None) -> NDArray[np.float64]:
    """Return ``value`` as a finite float64 array of ``shape`` (scalars broadcast if 1 entry)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from exc
    if a.shape != shape:
        if a.ndim == 0 and math.prod(shape) == 1:  # a bare number for a 1-entry array
            a = a.reshape(shape)
        else:
            raise ValueError(f"{name} must have shape {shape}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()!r}")
    if gt is not None and not np.all(a > gt):
        raise ValueError(f"{name} must be > {gt:g} elementwise, got {a.tolist()!r}")
    if ge is not None and not np.all(a >= ge):
        raise ValueError(f"{name} must be >= {ge:g} elementwise, got {a.tolist()!r}")
    return a
