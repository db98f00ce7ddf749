"""Set-up shared by every test module.

Figures render off-screen (the Agg backend) whatever the machine has, and the engine
factory is the one :func:`linvae.simulate` uses, so a test builds exactly what a run does.
Plain helper modules (``gap_scaling``, ``ode_oracle``) are importable because
pyproject.toml puts ``tests`` on the path (``pythonpath``); the test modules themselves
are imported with ``--import-mode=importlib``, so they need no ``__init__.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from linvae.simulation import new_engine


@pytest.fixture
def engine_factory() -> Callable[..., Any]:
    """``engine_factory(p, N, replicas=, seed=, method=, dtype=, noise=, blowup=)``."""
    return new_engine
