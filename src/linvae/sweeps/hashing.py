"""Canonical values of a sweep: their JSON form, and the point key that names a result.

A point's key is a hash of its task, parameters and settings written as canonical JSON.
Result files are named by it, so a sweep folder written earlier is resumed only as long
as this recipe gives the same keys: any change here must keep them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..params import FIELDS
from ..schedules import Schedule, from_dict

if TYPE_CHECKING:
    from ..params import Params

#: Fields of :class:`linvae.Params` that a grid axis may vary.
PARAM_FIELDS = tuple(f.name for f in FIELDS)

#: Version of the point-hash recipe; part of every hash.
_HASH_VERSION = 1
# Settings added to a built-in task after sweeps had been run with it. At these values,
# which do what the task did before, they stay out of the point hash, so that the
# result files of those sweeps keep their keys (and are not computed again).
_LATER_DEFAULTS: dict[str, dict[str, str]] = {"simulate": {"method": "weights"}}


def _xarray() -> Any:
    """Return the xarray module if it is loaded, else None.

    Only then can a value be an xarray object, so that grids and keys of plain values do
    without loading it.
    """
    return sys.modules.get("xarray")


def _encode(value: Any, name: str = "value") -> Any:
    """Return a JSON-able form of a grid value or setting that :func:`_decode` inverts."""
    xr = _xarray()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return _encode(value.item(), name)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Schedule):
        return {"__schedule__": value.to_dict()}
    if xr is not None and isinstance(value, xr.Dataset):
        from ..dataset import state_of

        return {k: v.tolist() for k, v in state_of(value).items()}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{name} must have string keys, got {k!r}")
            out[k] = _encode(v, f"{name}[{k!r}]")
        return out
    if isinstance(value, np.ndarray) or (xr is not None and isinstance(value, xr.DataArray)):
        return _encode(np.asarray(value).tolist(), name)
    if isinstance(value, (list, tuple, range)):
        return [_encode(v, name) for v in value]
    raise TypeError(f"{name} must be a number, string, bool, None, sequence, mapping or "
                    f"beta schedule, got {type(value).__name__} {value!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__schedule__"}:
            return from_dict(value["__schedule__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _normalise(value: Any) -> Any:
    """Make equal values hash equally: 2.0 and 2 are one number, NaN is a string."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(_normalise(_encode(value)), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def _params_json(p: Params) -> dict[str, Any]:
    """Params.to_attrs as plain JSON (the schedule as an object, not a string)."""
    attrs = p.to_attrs()
    attrs["beta_schedule"] = json.loads(attrs["beta_schedule"])
    return dict(_encode(attrs))


def point_key(task: str, params: Params, settings: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a task's full parameter set.

    The hash covers the task name, ``params.to_attrs()`` and every setting (defaults
    included), written as canonical JSON (sorted keys, integral floats as integers), so
    that equal parameter sets give equal keys on any machine and in any session.
    """
    blob = _canonical_json({"v": _HASH_VERSION, "task": task, "params": _params_json(params),
                            "settings": dict(settings)})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _job_key(task: str, params: Params, settings: Mapping[str, Any]) -> str:
    """Return the key of a sweep point.

    That is :func:`point_key` of its settings (defaults filled in) without those at their
    ``_LATER_DEFAULTS`` value.
    """
    later = _LATER_DEFAULTS.get(task, {})
    return point_key(task, params, {k: v for k, v in settings.items()
                                    if not (k in later and isinstance(v, str)
                                            and v == later[k])})
