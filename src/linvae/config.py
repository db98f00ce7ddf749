"""TOML run configurations for the command line.

A config file sets any command-line parameter; a flag given on the command line wins over
the file. Keys are the flag names with underscores (``--t-max`` -> ``t_max``,
``--M-star`` -> ``M_star``). Model parameters (the symbols of docs/model.md) go under
``[model]``, run settings at the top level or under ``[run]``; a section named after a command
(``[simulate]``, ``[ode]``, ``[compare]``, ...) applies to that command only::

    [model]
    M = 1
    M_star = 1
    rho = [1.0]          # or a scalar
    eta = 1.0
    beta = 0.5
    tau = 0.5

    [run]
    N = 2000
    t_max = 10.0
    seeds = 4
    out = "run.nc"

    [compare]
    Ns = [500, 1000, 2000]

A key that no command knows is an error (a typo must not be ignored silently); a key
that only other commands use is skipped, so one file can serve several commands. A key
in [run] reaches every command that has the flag: ``method`` is the simulation method
of ``simulate`` and ``compare`` but the solver of ``ode``, so it belongs in their own
sections.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "apply_config", "load_config", "section_values"]

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]

#: The sections a config file may have besides per-command ones.
SECTIONS = ("model", "run")


class ConfigError(ValueError):
    """A config file that cannot be read or holds a bad key or value."""


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file into a dict; every failure is a one-line :class:`ConfigError`."""
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError("reading a TOML config needs Python >= 3.11 or the 'tomli' package "
                          "(pip install tomli)")
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _toml.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {str(path)!r} is not readable") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    except _toml.TOMLDecodeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {msg}") from None
    return data


def section_values(data: Mapping[str, Any], command: str,
                   commands: Iterable[str]) -> dict[str, Any]:
    """Flatten the file for ``command``: top level < [model], [run] < [command]."""
    commands = set(commands)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SECTIONS and key not in commands:
                raise ConfigError(f"config: unknown section [{key}] (allowed: "
                                  f"{', '.join(f'[{s}]' for s in (*SECTIONS, *sorted(commands)))})")
            continue
        flat[key] = value
    for sec in SECTIONS:
        flat.update(data.get(sec, {}))
    flat.update(data.get(command, {}))
    return flat


def _convert(action: argparse.Action, key: str, value: Any) -> Any:
    """Check and convert a TOML value to what the flag's ``type`` would produce."""
    many = action.nargs in ("+", "*")
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ConfigError(f"config: {key} must be true or false, got {value!r}")
        return value
    if many:
        values = value if isinstance(value, list) else [value]
        return [_convert_one(action, key, v) for v in values]
    if isinstance(value, list):
        raise ConfigError(f"config: {key} takes one value, got a list {value!r}")
    return _convert_one(action, key, value)


def _convert_one(action: argparse.Action, key: str, value: Any) -> Any:
    typ = action.type
    if isinstance(value, dict | list):
        raise ConfigError(f"config: {key} must be a single value, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config: {key} must be an integer, got {value!r}")
        out: Any = value
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config: {key} must be a number, got {value!r}")
        out = float(value)
    elif typ is None or typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"config: {key} must be a string, got {value!r}")
        out = value
    else:  # e.g. Path or a custom parser: it takes the text form
        try:
            out = typ(str(value))  # type: ignore[operator]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"config: bad value for {key}: {exc}") from None
    if action.choices is not None and out not in action.choices:
        raise ConfigError(f"config: {key} must be one of {list(action.choices)}, got {out!r}")
    return out


def apply_config(parser: argparse.ArgumentParser, data: Mapping[str, Any], command: str,
                 commands: Iterable[str], known_anywhere: set[str]) -> dict[str, Any]:
    """Set ``parser``'s defaults from the config, so that flags given on the command line win.

    Returns the values applied (keys = argparse dests).
    """
    actions = {a.dest: a for a in parser._actions
               if a.dest not in ("help", "config", "command", "func")
               and a.dest is not argparse.SUPPRESS}
    values = section_values(data, command, commands)
    applied: dict[str, Any] = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            if dest in known_anywhere:
                continue  # meant for another command
            raise ConfigError(f"config: unknown key {key!r} for 'linvae {command}' (keys are "
                              f"flag names with underscores, e.g. t_max for --t-max)")
        applied[dest] = _convert(actions[dest], key, value)
    parser.set_defaults(**applied)
    return applied
