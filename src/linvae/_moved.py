"""Names that moved to another module: the old spelling still works, with a warning.

A module whose names moved keeps a ``_MOVED`` table (name -> the module of the package
where it lives now) and sets ``__getattr__ = forward(__name__, _MOVED)`` (PEP 562). The
new home is imported only when an old name is used, so the old module does not depend
on it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def forward(module: str, moved: Mapping[str, str], *,
            warn: bool = True) -> Callable[[str], Any]:
    """Return the ``__getattr__`` of ``module``: each name of ``moved`` from its new home.

    It warns (DeprecationWarning) that ``<module>.<name>`` is now
    ``linvae.<home>.<name>``; ``warn=False`` is for private modules, whose names carry no
    promise.
    """
    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home = moved[name]
        if warn:
            warnings.warn(f"{module}.{name} is linvae.{home}.{name}: import it from there",
                          DeprecationWarning, stacklevel=2)  # at the code that used it
        return getattr(importlib.import_module(f"linvae.{home}"), name)

    return __getattr__
