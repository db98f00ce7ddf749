"""The ``linvae`` command line.

Commands: ``simulate`` (one-pass SGD), ``ode`` (the limiting ODEs), ``compare`` (SGD vs
ODE at several N), ``stability`` (fixed points and thresholds), ``plot`` (figure of a
result file), ``reproduce`` (every figure family of the paper) and ``info``.

Every model parameter is a flag named by its symbol in docs/model.md, and every flag can
also be set in a TOML file given with ``--config`` (see :mod:`linvae.config`); a flag on the
command line wins over the file. Every command checks all its inputs before it logs what
it starts and before any work. User mistakes (a bad value, an unreadable config, an
unwritable output) end with one line on stderr and exit code 2, never a traceback, in one
format that names the flag, the value and the rule (:class:`_Context`):
``linvae simulate: error: --beta -1: must be >= 0 (see linvae simulate --help)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .methods import METHODS

log = logging.getLogger("linvae")


def _int_flag(name: str, *, ge: int | None = None, le: int | None = None
              ) -> Callable[[str], int]:
    """Return an argparse type for an integer flag, with the rule and wording of the Python API.

    The rule is :func:`linvae._validate.parse_int`'s, so "1e4", "10_000" and "10000.0"
    are 10000.
    """

    def parse(text: str) -> int:
        from ._validate import parse_int

        try:
            return parse_int(name, text, ge=ge, le=le)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "integer"
    return parse


def _model_flags() -> list[tuple[str, Callable[[str], Any], Any, str]]:
    """(flag, type, default, help) of the model parameters, from linvae.params.FIELDS.

    A schedule (beta) is its number here; --anneal and --gamma make it a schedule.
    """
    from .params import FIELDS

    flags: list[tuple[str, Callable[[str], Any], Any, str]] = []
    for f in FIELDS:
        typ: Callable[[str], Any] = _int_flag(f.name, ge=int(f.ge or 0)) if f.kind == "int" \
            else float
        default = [f.default] if f.kind == "vector" else f.default
        extra = {"schedule": "; with --anneal, its limit beta_inf",
                 "rate": "; default: tau"}.get(f.kind, "")
        flags.append((f.name, typ, default, f"{f.symbol}: {f.help} ({f.rule}){extra}"))
    return [
        *flags,
        ("anneal", str, "constant", ("KL annealing schedule beta(t): constant, tanh "
                                     "(beta tanh(gamma t)), linear, sigmoid or cyclical")),
        ("gamma", float, 0.1, "annealing rate gamma of the schedule (> 0; ignored if constant)"),
    ]


# (flag, type, default, help) of the model parameters, shared by every command
MODEL_FLAGS = _model_flags()

# The run settings that several commands take, each declared once (argparse keywords,
# one default and one help each); _add_run_flag gives a command one of them
RUN_FLAGS: dict[str, dict[str, Any]] = {
    "N": {"type": _int_flag("N", ge=1), "default": 10_000, "help": "input dimension N"},
    "t_max": {"type": float, "default": 20.0,
              "help": "final time t of the run (t = steps/N)"},
    "record_every": {"type": float, "default": 0.1, "help": "spacing of the recorded times t"},
    "replicas": {"type": _int_flag("replicas", ge=1), "default": 4,
                 "help": "independent SGD replicas of each run (compare: of each N; sweep: "
                         "of each grid point)"},
    "seed": {"type": _int_flag("seed", ge=0), "default": 0,
             "help": "base seed: replica r draws from (seed, r); compare runs its i-th N "
                     "(ascending) from seed + i"},
    "threads": {"type": _int_flag("threads", ge=1), "default": None,
                "help": "OpenMP threads (default: all)"},
    "method": {"choices": list(METHODS), "default": "weights",
               "help": "how SGD is simulated: weights: SGD on the N-vectors (cost ~ N per "
                       "step); gram: the Gram chain, the exact finite-N law of the order "
                       "parameters at a cost independent of N (Gaussian noise, float64, "
                       "N >= M* + 2M; docs/model.md#gram-chain)"},
}

# --out of each kind of output: (help, suffix of the default linvae-<command><suffix>,
# None: no default)
OUT_KINDS: dict[str, tuple[str, str | None]] = {
    "netcdf": ("output netCDF file (written atomically)", ".nc"),
    "folder": ("output folder (created if missing)", ""),
    "json": ("also write the results to this JSON file", None),
    "figures": ("output figure(s), .png, .pdf or .svg (default: FILE with .png)", None),
}


#: Every error line of the command line is shorter than this (characters)
LINE_LIMIT = 120

#: Library parameter names that a command's flag sets under another name (name -> dest)
_DEST_OF = {"max_workers": "workers", "sim_method": "method"}
#: How the library's messages about a parameter go on after its name ("beta must be ...")
_VERBS = ("must|needs|applies|takes|runs|draws|goes|is|are|has|cannot|does|exceeds|"
          "belongs|holds")


class UsageError(ValueError):
    """A bad command line: the setting(s) concerned and the rule broken (exit code 2).

    ``names`` are argparse dests ("t_max", or ("N", "seeds") for a rule about two flags)
    or a positional ("file"); ``value`` replaces the value shown, which is otherwise the
    value as typed (or as read from --config). :func:`main` prints it as one line,
    ``linvae CMD: error: --t-max -1: must be > 0 (see linvae CMD --help)``.
    """

    def __init__(self, names: str | Sequence[str], rule: str, *, value: Any = None) -> None:
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.rule, self.value = rule, value
        shown = " ".join(_flag(n) for n in self.names) + ("" if value is None else f" {value}")
        super().__init__(f"{shown}: {rule}" if shown else rule)


def _show(value: Any) -> str:
    """Return a value as a command line writes it: -1.0 as -1, a list as its items."""
    if isinstance(value, list | tuple):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:.15g}"
    return str(value)


def _is_option(token: str) -> bool:
    """Whether argparse reads ``token`` as an option (a negative number is a value)."""
    return (token.startswith("-") and token != "-"
            and re.fullmatch(r"-\d+|-\d*\.\d+", token) is None)


def _literal(text: str) -> str:
    """Return the string of argparse's repr of a value ("'abc'" -> abc)."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


class _Context:
    """What an error line needs: the command, its parser, the command line, the values read.

    Every error of the command line goes through :meth:`line`, so that each is one line
    in one format: ``PROG: error: FLAG VALUE: RULE (see PROG --help)``.
    """

    def __init__(self, prog: str, parser: argparse.ArgumentParser, argv: Sequence[str],
                 args: argparse.Namespace | None = None,
                 from_config: Sequence[str] = ()) -> None:
        self.prog, self.parser, self.argv, self.args = prog, parser, list(argv), args
        self.from_config = set(from_config)

    def action(self, name: str) -> argparse.Action | None:
        """Return the action of a setting (dest, library name, flag or positional), or None."""
        dest = _DEST_OF.get(name, name)
        for a in self.parser._actions:
            if dest in (a.dest, a.metavar) or dest in a.option_strings:
                return None if a.dest == "help" else a
        return None

    @staticmethod
    def flag(action: argparse.Action) -> str:
        """Return the name of ``action`` in messages: its long flag, else its metavar."""
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs or action.option_strings:
            return (longs or action.option_strings)[0]
        return str(action.metavar or action.dest)

    def _resolve(self, option: str) -> argparse.Action | None:
        """Return the action an option token means, abbreviations included (as argparse)."""
        options = self.parser._option_string_actions
        if option in options:
            return options[option]
        if option.startswith("--") and self.parser.allow_abbrev:
            hits = {id(a): a for o, a in options.items() if o.startswith(option)}
            if len(hits) == 1:
                return next(iter(hits.values()))
        return None

    def typed(self, action: argparse.Action) -> list[str] | None:
        """Return the tokens given to ``action`` on the command line (its last use), or None."""
        if not action.option_strings:
            return None
        most = 0 if action.nargs == 0 else 1 if action.nargs is None else len(self.argv)
        found, i = None, 0
        while i < len(self.argv):
            token = self.argv[i]
            if token == "--":
                break
            option, eq, rest = token.partition("=")
            if _is_option(token) and self._resolve(option) is action:
                if eq:
                    found, i = [rest], i + 1
                    continue
                j = i + 1
                while j < len(self.argv) and j - i - 1 < most and not _is_option(self.argv[j]):
                    j += 1
                found, i = self.argv[i + 1:j], j
                continue
            i += 1
        return found

    def given(self, name: str, value: Any = None) -> str:
        """Return a setting's flag and its value: ``value``, else as typed, else as read."""
        action = self.action(name)
        if action is None:
            return name if value is None else f"{name} {_show(value)}"
        flag = self.flag(action)
        if value is not None:  # one of several values: as typed if it was ("1e4" for 10000)
            same = [t for t in self.typed(action) or [] if _reads_as(action, t, value)]
            return f"{flag} {same[0] if same else _show(value)}"
        typed = self.typed(action)
        if typed is not None:
            return " ".join([flag, *typed])
        read = None if self.args is None else getattr(self.args, action.dest, None)
        if read is None or isinstance(read, bool):
            return flag
        config = getattr(self.args, "config", None)
        where = f" (from {config})" if action.dest in self.from_config else ""
        return f"{flag} {_show(read)}{where}"

    def flags_in(self, text: str) -> str:
        """Write the library's ``name=value`` (and ``noise_df,``) as flags: ``--name value``."""

        def flag(m: re.Match[str]) -> str:
            action = self.action(m["name"])
            if action is None or not action.option_strings:
                return m[0]
            if m["value"] is None:  # a bare name: only one with "_", not "M" or "noise"
                return self.flag(action) if "_" in m["name"] else m[0]
            return f"{self.flag(action)} {m['value'].strip(chr(39))}"

        return re.sub(r"\b(?P<name>[A-Za-z]\w*)(?:=(?P<value>'[^']*'|[^\s,;:)]+)|(?=[,;:)]|$))",
                      flag, text)

    def rule(self, message: str) -> tuple[str, str] | None:
        """Split a library message about a parameter into (its setting, the rule broken).

        "beta must be >= 0, got -1.0" is ("beta", "must be >= 0"): the value is shown
        with the flag. None if the message names no setting of this command.
        """
        m = re.fullmatch(r"(?P<name>[A-Za-z_]\w*)(?:\[[^\]]*\])?(?:=(?:'[^']*'|[^\s,:;]+))?"
                         rf":? (?P<rest>(?:{_VERBS})\b.+)", " ".join(message.split()))
        if m is None or self.action(m["name"]) is None:
            return None
        return m["name"], self.clean(m["rest"])

    def clean(self, rest: str) -> str:
        """Return the rule of a library message after its parameter's name, in flags."""
        shape = re.fullmatch(r"must have shape \((\d+),\), got shape \(.*\)", rest)
        if shape:  # a vector flag with neither one value nor one per factor
            return f"needs one value, or one per factor (--M-star {shape[1]})"
        rest = re.sub(r"^must be (.+?) elementwise\b", r"every value must be \1", rest)
        rest = re.sub(r"^((?:every value )?must .+?), got .*$", r"\1", rest)
        return self.flags_in(rest)

    def line(self, given: str, rule: str, *, see_help: bool = True) -> str:
        """Return the error line: ``PROG: error: GIVEN: RULE (see PROG --help)``, fitted."""
        return _error_line(self.prog, given, rule, see_help=see_help)

    def usage(self, exc: UsageError) -> str:
        """Return the error line of a :class:`UsageError`."""
        if not exc.names:  # about no flag in particular
            return self.line("", exc.rule, see_help=False)
        if exc.value is not None:
            given = " ".join(self.given(n, exc.value if i == 0 else None)
                             for i, n in enumerate(exc.names))
        else:
            given = " ".join(self.given(n) for n in exc.names)
        return self.line(given, exc.rule)

    def error(self, exc: BaseException) -> str:
        """Return the error line of an exception of the library or of this module."""
        if isinstance(exc, UsageError):
            return self.usage(exc)
        text = _one_line(exc)
        split = self.rule(text)
        if split is not None:
            return self.line(self.given(split[0]), split[1])
        return self.line("", text, see_help=False)

    def parse_error(self, message: str) -> str:
        """Return the error line of an argparse error message."""
        m = re.fullmatch(r"argument (?P<arg>[^:]+): (?P<msg>.*)", message, re.DOTALL)
        if m:
            names = m["arg"].split("/")
            action = next((a for a in self.parser._actions
                           if a.option_strings == names or names[0] in (a.metavar, a.dest)),
                          None)
            if action is not None:
                return self.line(*self._argument_error(action, " ".join(m["msg"].split())))
        for pattern, rule in ((r"unrecognized arguments: (?P<given>.*)",
                               f"not an option or argument of {self.prog}"),
                              (r"the following arguments are required: (?P<given>.*)",
                               "missing (required)"),
                              (r"ambiguous option: (?P<given>[^=\s]+)\S* could match (?P<m>.*)",
                               "ambiguous: could be {m}")):
            m = re.fullmatch(pattern, message, re.DOTALL)
            if m:
                return self.line(m["given"], rule.format(**m.groupdict()))
        return self.line("", message)

    def _argument_error(self, action: argparse.Action, msg: str) -> tuple[str, str]:
        flag = self.flag(action)
        if msg.startswith("expected"):
            return flag, "needs a value" if action.nargs is None else "needs at least one value"
        choice = re.match(r"invalid choice: (?P<v>.+?) \(choose from", msg)
        if choice is not None and action.choices is not None:
            return (f"{flag} {_literal(choice['v'])}",
                    f"must be one of {', '.join(map(str, action.choices))}")
        invalid = re.fullmatch(r"invalid (?P<type>\S+) value: (?P<v>.*)", msg)
        if invalid is not None:
            kind = {"float": "a real number", "int": "an integer"}.get(invalid["type"],
                                                                      f"a valid {invalid['type']}")
            return f"{flag} {_literal(invalid['v'])}", f"must be {kind}"
        # an ArgumentTypeError of a type function (e.g. _int_flag), in the library's words;
        # the value shown is the first token that the type refuses
        bad = next((t for t in self.typed(action) or [] if not _accepts(action, t)), None)
        split = re.fullmatch(r"(?P<name>[\w-]+)(?:\[[^\]]*\])? (?P<rest>.+)", msg)
        rule = self.clean(split["rest"]) if split else msg
        return (flag if bad is None else f"{flag} {bad}"), rule


def _reads_as(action: argparse.Action, token: str, value: Any) -> bool:
    """Whether ``action`` reads ``token`` as ``value``."""
    try:
        return bool(action.type(token) == value) if callable(action.type) else token == value
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False


def _accepts(action: argparse.Action, token: str) -> bool:
    """Whether ``action``'s type function takes ``token``."""
    if not callable(action.type):
        return True
    try:
        action.type(token)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False
    return True


def _fit(rule: str, room: int) -> str:
    """Shorten ``rule`` to ``room`` characters: drop trailing asides and clauses, then cut.

    A list of choices cut short ends in ", ...".
    """
    rule = " ".join(rule.split())
    choices = rule.startswith("must be one of ")
    more = False  # whether the last cut was in the list of choices
    while len(rule) + (5 if more else 0) > room:
        shorter = re.sub(r"\s*\([^()]*\)$", "", rule)  # a closing parenthetical aside
        if shorter == rule:
            cut = max(rule.rfind(sep) for sep in ("; ", ": ", ", ", " ("))
            if cut < 12:
                return rule[:max(room - 3, 1)].rstrip() + "..."
            more, shorter = choices and rule.startswith(", ", cut), rule[:cut]
        rule = shorter
    return rule + (", ..." if more else "")


def _error_line(prog: str, given: str, rule: str, *, see_help: bool = True) -> str:
    """Return ``PROG: error: GIVEN: RULE (see PROG --help)`` in under LINE_LIMIT characters.

    A long value is cut in its middle; a long rule is kept whole with the shorter "(see
    --help)", else loses its trailing asides and clauses.
    """
    head = f"{prog}: error: "
    given = " ".join(given.split())
    if len(given) > 40:
        given = f"{given[:24]}...{given[-13:]}"
    lead = f"{given}: " if given else ""
    room = LINE_LIMIT - 1 - len(head) - len(lead)
    rule = " ".join(rule.split())
    if not see_help:
        return f"{head}{lead}{_fit(rule, room)}"
    tail = f" (see {prog} --help)"
    if len(rule) + len(tail) > room:  # the rule first: the shorter pointer if it needs it
        fitted = _fit(rule, room - len(" (see --help)"))
        tail = tail if len(fitted) + len(tail) <= room else " (see --help)"
        rule = fitted
    return f"{head}{lead}{rule}{tail}"


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help formatter that shows each flag's default once.

    Not when the help text already says it ("(default: all)"), and not for None or an
    on/off switch, where it says nothing.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or action.default is None or action.nargs == 0
                or action.default is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        # the command line as typed, for the value an error names
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extra = self.parse_known_args(args, namespace)
        if extra:  # say it as the command whose options they are not
            subs = getattr(self, "_linvae_subparsers", {})
            subs.get(getattr(ns, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extra)}")
        return ns

    def error(self, message: str) -> NoReturn:
        context = _Context(self.prog, self, getattr(self, "_argv", []))
        print(context.parse_error(message), file=sys.stderr)
        sys.exit(2)


def _schedule_kinds() -> tuple[str, ...]:
    from .schedules import KINDS

    return KINDS


def _flag(name: str) -> str:
    """Return the flag of a setting or symbol: t_max is --t-max, M_star is --M-star."""
    return "--" + name.replace("_", "-")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (the symbols of docs/model.md)")
    for name, typ, default, help_ in MODEL_FLAGS:
        flag = _flag(name)
        if isinstance(default, list):  # a vector: one value for all, or one per factor
            group.add_argument(flag, type=typ, nargs="+", default=default, help=help_,
                               metavar=name.upper())
        elif name == "anneal":
            group.add_argument(flag, choices=_schedule_kinds(), default=default, help=help_)
        else:
            group.add_argument(flag, type=typ, default=default, help=help_)


_NO_DEFAULT = object()


def _add_run_flag(group: argparse._ActionsContainer, name: str, *, default: Any = _NO_DEFAULT,
                  per_N: bool = False) -> None:
    """Add the run flag ``name`` of :data:`RUN_FLAGS` to a command.

    ``default`` replaces the flag's one default where a command has a reason to differ
    (stated where it is passed). ``per_N`` takes one value for every N or one per N of
    --Ns (compare).
    """
    kwargs = dict(RUN_FLAGS[name])
    if default is not _NO_DEFAULT:
        kwargs["default"] = default
    if per_N:
        kwargs.update(nargs="+", default=[kwargs["default"]],
                      help=f"{kwargs['help']}; one value for every N, or one per N in the "
                           f"order of --Ns")
    group.add_argument(_flag(name), **kwargs)


def _add_out(group: argparse._ActionsContainer, command: str, kind: str) -> None:
    """Add --out, the output of a command: one of :data:`OUT_KINDS`."""
    help_, suffix = OUT_KINDS[kind]
    group.add_argument("--out", type=Path, nargs="+" if kind == "figures" else None,
                       default=None if suffix is None else Path(f"linvae-{command}{suffix}"),
                       help=help_)


def _add_quiet(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS,
               help_: str = "no progress bars, only warnings and errors") -> None:
    # a command's own -q defaults to SUPPRESS, so that it leaves a -q given before the
    # command in place
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help=help_)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="read parameters from this TOML file ([model] for the "
                             "symbols of docs/model.md, [run] or top level for run "
                             "settings, [<command>] for this command only); flags "
                             "given here win")
    _add_quiet(parser)


def _params(args: argparse.Namespace) -> Any:
    from .params import FIELDS, Params

    values: dict[str, Any] = {}
    for f in FIELDS:
        value = getattr(args, f.name)
        if f.kind == "vector" and len(value) == 1:
            value = value[0]
        elif f.kind == "schedule" and getattr(args, "anneal", "constant") != "constant":
            from .schedules import make_schedule

            value = make_schedule(args.anneal, value, args.gamma)
        values[f.name] = value
    return Params(**values)


def _save_result(ds: Any, args: argparse.Namespace, t0: float) -> int:
    """Write a command's dataset (with the run settings in its attributes) and say where."""
    from .io import save

    ds.attrs.update(_run_attrs(args))
    path = save(ds, args.out)
    log.info("wrote %s (%.1f s)", path, time.perf_counter() - t0)
    return 0


def _run_attrs(args: argparse.Namespace, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Run settings and the command line, as netCDF-safe attributes."""
    model = {name for name, *_ in MODEL_FLAGS}
    attrs: dict[str, Any] = {"command": "linvae " + " ".join(map(shlex.quote, args.argv))}
    for k, v in vars(args).items():
        if k in model or k in skip or k in ("func", "command", "argv", "quiet") or v is None:
            continue
        if isinstance(v, bool):
            v = int(v)
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, list):
            v = json.dumps([str(x) if isinstance(x, Path) else x for x in v])
        attrs[f"run_{k}"] = v
    attrs["anneal"] = args.anneal
    if args.anneal != "constant":
        attrs["gamma"] = args.gamma
    return attrs


def _output_rule(exc: BaseException, path: Path, what: str) -> str:
    """Return the rule of an output check's message, less the path the flag shows."""
    text = _one_line(exc)
    quoted = f"{what} {str(path)!r}"
    text = text.replace(f"cannot create {quoted}: ", "cannot be created: ")
    if text.startswith(quoted):
        text = text[len(quoted):].lstrip(": ")
    folder = path.parent if str(path.parent) else Path(".")
    text = text.replace(f"output folder {str(folder)!r}", "its folder")  # the path shows it
    text = text.replace(f"{what} path ", "").replace("output folder ", "folder ")
    return re.sub(r"'([^'\s]*)'", r"\1", text)


def _check_out_file(path: Path, name: str = "out", what: str = "output") -> Path:
    """Refuse an unwritable output file (flag ``name``) before any work."""
    from .errors import OutputError
    from .io import check_output

    try:
        return check_output(path, what)
    except OutputError as exc:
        raise UsageError(name, _output_rule(exc, path, what), value=path) from None


def _check_out_dir(path: Path, name: str = "out") -> Path:
    """Refuse an unusable output folder (flag ``name``) before any work; nothing is created."""
    from .errors import OutputError
    from .io import check_output_folder

    try:
        return check_output_folder(path)
    except OutputError as exc:
        raise UsageError(name, _output_rule(exc, path, "output folder"), value=path) from None


def _check_times(args: argparse.Namespace) -> None:
    """Refuse a --t-max or --record-every that no run takes (as simulate and integrate do)."""
    from ._validate import check_real
    from .dataset import MAX_RECORDS

    check_real("t_max", args.t_max, gt=0.0)
    check_real("record_every", args.record_every, gt=0.0)
    if args.record_every > args.t_max:
        raise UsageError("record_every", f"must be <= --t-max ({_show(args.t_max)})")
    if args.t_max / args.record_every > MAX_RECORDS:
        raise UsageError(("record_every", "t_max"),
                         f"{args.t_max / args.record_every:.3g} records; at most "
                         f"{MAX_RECORDS:.0e}")


def _check_sgd(args: argparse.Namespace, p: Any, N: int, *, replicas: int, method: str,
               data: Any, prescribed: bool, N_name: str = "N",
               replicas_name: str = "seeds") -> None:
    """Refuse, before the start line, what linvae.simulate refuses once it has started.

    The method's own rules, the engine's size limits, the step counter and the memory of
    the weights and records (simulate's estimate). ``N_name`` and ``replicas_name`` are the
    flags of N and of the replicas in this command (compare: --Ns, --replicas).
    """
    from . import _core
    from . import methods as _methods

    shown_N = args.N if N_name == "N" else N  # compare: the one N of --Ns concerned
    meth = _methods.as_method(method, getattr(args, "dtype", "float64"))
    meth.check(p, N, data)
    limit = int(_core.build_info()["max_latents"])
    for name in ("M", "M_star"):
        if getattr(p, name) > limit:
            raise UsageError(name, f"must be <= {limit}, the compiled engine's limit")
    K = p.M_star + 2 * p.M  # columns of [W*, W, V]
    if prescribed and N < K:
        raise UsageError(N_name, f"must be >= M* + 2M = {K} to realise a prescribed start",
                         value=None if N_name == "N" else N)
    if N < p.M_star:
        raise UsageError(N_name, f"must be >= M* = {p.M_star} for an orthonormal teacher",
                         value=None if N_name == "N" else N)
    if args.t_max * N > 2.0**62:
        raise UsageError(("t_max", N_name), f"{args.t_max * N:.3g} steps; the engine counts "
                         f"at most 2^62")
    weights = meth.weight_bytes(p, N, replicas, data)
    T = args.t_max / args.record_every + 2
    records = _methods.record_bytes(p, replicas, T)
    avail = _methods.available_memory()
    if weights + records > avail:
        if weights >= records:
            raise UsageError((N_name, replicas_name), f"the weights need {weights / 2**30:.3g} "
                             f"GiB; {avail / 2**30:.3g} GiB is available",
                             value=None if N_name == "N" else shown_N)
        raise UsageError(("record_every", "t_max", replicas_name),
                         f"{T:.3g} records need {records / 2**30:.3g} GiB; "
                         f"{avail / 2**30:.3g} GiB is available")


# -- commands -------------------------------------------------------------------------


def _simd(info: dict[str, Any]) -> str:
    """Say which SIMD code runs: the kernels' run-time path, with the compiled baseline.

    ``simd`` is what the compiler may use everywhere (the build's -march), ``simd_runtime``
    the path the hand-vectorised kernels (generators, hot passes) picked on this CPU.
    """
    import os

    base, runtime = info.get("simd", "?"), info.get("simd_runtime")
    if runtime is None or runtime == base:
        return f"{base} (in use)"
    if runtime != "scalar":
        return f"{runtime} (in use; compiled baseline {base})"
    why = ("LINVAE_SIMD=scalar" if os.environ.get("LINVAE_SIMD") == "scalar"
           else "this CPU or build has no AVX2 path")
    return f"{base} (in use; the AVX2 kernels are off: {why})"


def cmd_info(args: argparse.Namespace) -> int:
    """Print the version and the build information of the C++ core (``linvae info``)."""
    import linvae
    from linvae import _core

    info = dict(_core.build_info())
    print(f"linvae {linvae.__version__}")
    for k, v in info.items():
        if k == "simd":
            v = _simd(info)
        elif k == "simd_runtime":  # said by the simd line
            continue
        print(f"  {k}: {v}")
    return 0


def _init_state(args: argparse.Namespace, p: Any, default: str) -> Any:
    """Return the start: a prescribed overlap state, the random start, or a file's t = 0 state.

    A file's state is checked against ``p`` here, before the run starts.
    """
    from .dataset import parse_state
    from .io import load
    from .states import overlap_state

    if args.init_from is not None:
        path = Path(args.init_from)
        if not path.is_file():
            raise UsageError("init_from", "does not exist")
        try:
            ds = load(path)
            ds0 = ds.isel(t=0)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError("init_from", f"is not a linvae result ({_one_line(exc)})") from None
        if "replica" in ds0.dims:
            ds0 = ds0.mean("replica")
        try:
            parse_state(ds0, p, name="state")
        except (TypeError, ValueError, KeyError) as exc:
            raise UsageError("init_from", f"does not fit the model: {_one_line(exc)}") from None
        return ds0
    init = args.init or default
    if init == "random":
        return "random"
    return overlap_state(p, args.overlap)


def _log_start(args: argparse.Namespace) -> None:
    """Log where a run starts if it is a file's state (after its start line)."""
    if getattr(args, "init_from", None) is not None:
        log.info("start: mean t = 0 state of %s", args.init_from)


def _default_checkpoint(out: Path) -> Path:
    """Return the checkpoint simulate writes beside ``out``.

    run.nc: run.nc.ckpt, a name that no other run's checkpoint has.
    """
    return out.with_name(out.name + ".ckpt")


def _partial_path(out: Path) -> Path:
    """Return where an interrupted run's partial result goes (run.nc: run.partial.nc).

    So a file under the final name is always a complete result.
    """
    return out.with_name(f"{out.stem}.partial{out.suffix or '.nc'}")


def _resume_command(argv: Sequence[str], ckpt: Path) -> str:
    """Return the command line that continues this run: the same flags, --resume CKPT."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--resume":
            skip = True
        elif not a.startswith("--resume="):
            out.append(a)
    return shlex.join(["linvae", *out, "--resume", str(ckpt)])


class _DropStopNotice(logging.Filter):
    """Logging filter that drops the line simulate logs when a signal stops it.

    Each command says it in its own words.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "linvae_stop_notice", False)


def _stopped_outside_run(exc: KeyboardInterrupt, args: argparse.Namespace, ckpt: Path) -> int:
    """Say what a signal that came outside simulate's run loop left behind."""
    signum = int(getattr(exc, "signal", 2))
    where = (f"the run is in {ckpt}; go on with: {_resume_command(args.argv, ckpt)}"
             if ckpt.exists() else "nothing was computed yet")
    print(f"linvae simulate: interrupted by {_signal_name(signum)}; {where}", file=sys.stderr)
    return 128 + signum


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one-pass SGD replicas and write the result file (``linvae simulate``).

    Always checkpoints; a stop by signal writes the partial result and says how to resume.
    Returns 1 if every replica diverged, else 0 (or the signal's exit status).
    """
    from ._validate import check_real
    from .data import check_data
    from .io import save
    from .simulation import DivergenceWarning, SimulationInterrupted, simulate

    # every input is checked before the start line and the work
    p = _params(args)
    _check_times(args)
    check_real("checkpoint_every", args.checkpoint_every, ge=0.0)
    _check_out_file(args.out)
    # always checkpoint (periodically, when stopped), so that no stop loses the work; a
    # checkpoint the user did not name is removed once the result is written
    own_ckpt = args.checkpoint is None
    ckpt = _default_checkpoint(args.out) if own_ckpt else args.checkpoint
    _check_out_file(ckpt, "checkpoint", "checkpoint")
    if own_ckpt and ckpt.exists() and (args.resume is None
                                       or Path(args.resume).resolve() != ckpt.resolve()):
        raise UsageError("checkpoint", "holds a stopped run: --resume it, or delete it",
                         value=ckpt)
    if args.resume is not None and not Path(args.resume).is_file():
        raise UsageError("resume", "does not exist")
    data: dict[str, Any] = {
        "noise": args.noise, "noise_df": args.noise_df, "factors": args.factors,
        "dataset_size": args.dataset_size, "order": args.order,
        "dataset_seed": args.dataset_seed, "training_loss": args.training_loss}
    spec = check_data(**data)
    init = _init_state(args, p, "random")
    _check_sgd(args, p, args.N, replicas=args.seeds, method=args.method, data=spec,
               prescribed=not isinstance(init, str))
    log.info("simulating %r at N=%d for t <= %g with %d replicas", p, args.N, args.t_max,
             args.seeds)
    _log_start(args)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # summarised below
            ds = simulate(p, N=args.N, t_max=args.t_max, record_every=args.record_every,
                          seeds=args.seeds, seed=args.seed, init=init, threads=args.threads,
                          dtype=args.dtype, progress=not args.quiet, checkpoint=ckpt,
                          checkpoint_every=args.checkpoint_every, resume=args.resume,
                          method=args.method, **data,
                          stop_signals=["SIGTERM", *(f"SIG{s}" for s in args.stop_signal)])
    except SimulationInterrupted as exc:
        part = _partial_path(args.out)
        if exc.partial is not None:
            exc.partial.attrs.update(_run_attrs(args))
            save(exc.partial, part)
        print(f"linvae simulate: stopped by {_signal_name(exc.signal)} at t = {exc.t:.6g} of "
              f"{args.t_max:g}; partial result in {part}, checkpoint in {ckpt}; resume "
              f"with: {_resume_command(args.argv, ckpt)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # just before or after the run proper
        return _stopped_outside_run(exc, args, ckpt)
    try:
        _save_result(ds, args, t0)
        if own_ckpt:
            ckpt.unlink(missing_ok=True)
        _partial_path(args.out).unlink(missing_ok=True)  # superseded by the complete result
    except KeyboardInterrupt as exc:
        return _stopped_outside_run(exc, args, ckpt)
    diverged = ds["diverged"].values
    if diverged.any():
        r = int(diverged.argmax())
        what = (f"replica {r} at t = {float(ds['t_diverged'][r]):.4g}: "
                f"{ds['divergence'].values[r]}")
        if diverged.all():
            print(f"linvae simulate: error: every replica diverged ({what}); the result is "
                  f"in {args.out}, NaN after each divergence (a smaller --tau may be "
                  f"stable)", file=sys.stderr)
            return 1
        print(f"linvae simulate: warning: {int(diverged.sum())} of {diverged.size} replicas "
              f"diverged ({what}); their records after that are NaN", file=sys.stderr)
    return 0


def cmd_ode(args: argparse.Namespace) -> int:
    """Integrate the limiting ODEs and write the result file (``linvae ode``).

    If the integration fails, the trajectory before the failure is written to the partial
    result file.
    """
    from ._validate import check_real
    from .errors import IntegrationError
    from .ode import integrate

    # every input is checked before the start line and the work
    p = _params(args)
    _check_times(args)
    check_real("rtol", args.rtol, gt=0.0)
    check_real("atol", args.atol, gt=0.0)
    _check_out_file(args.out)
    init = _init_state(args, p, "overlap")
    if isinstance(init, str):
        raise UsageError("init", "the ODE cannot start from the random state (m = d = 0 "
                         "never moves); use --init overlap or --init-from FILE")
    log.info("integrating the ODEs for %r up to t = %g (%s)", p, args.t_max, args.method)
    _log_start(args)
    t0 = time.perf_counter()
    try:
        ds = integrate(p, t_max=args.t_max, init=init, record_every=args.record_every,
                       method=args.method, rtol=args.rtol, atol=args.atol)
    except IntegrationError as exc:
        if exc.partial is None:
            raise
        from .io import save

        part = _partial_path(args.out)
        exc.partial.attrs.update(_run_attrs(args))
        save(exc.partial, part)
        raise IntegrationError(f"{exc} (the trajectory before it is in {part})", t=exc.t,
                               partial=exc.partial) from None
    _save_result(ds, args, t0)
    _partial_path(args.out).unlink(missing_ok=True)  # superseded by the complete result
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare SGD at several N with the ODE and write data and figures (``linvae compare``)."""
    from .comparison import _check_Ns, run_compare
    from .data import check_data

    # every input is checked before the start line and the work
    p = _params(args)
    Ns = _check_Ns(args.Ns)
    _check_times(args)
    out = _check_out_dir(args.out)
    init = _init_state(args, p, "overlap")
    if isinstance(init, str):
        raise UsageError("init", "compare cannot start from the random state; use --init "
                         "overlap")
    if len(args.method) not in (1, len(args.Ns)):
        raise UsageError("method", f"needs one method for every N, or one per N "
                         f"({len(args.Ns)} for --Ns {_show(args.Ns)})")
    methods = args.method[0] if len(args.method) == 1 else dict(zip(args.Ns, args.method,
                                                                    strict=True))
    for N in Ns:
        method = methods if isinstance(methods, str) else methods[N]
        _check_sgd(args, p, N, replicas=args.replicas, method=method, data=check_data(),
                   prescribed=True, N_name="Ns", replicas_name="replicas")
    log.info("comparing SGD at N = %s with the ODE for %r, t <= %g, %d replicas",
             args.Ns, p, args.t_max, args.replicas)
    _log_start(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmp, files = run_compare(p, out, Ns=args.Ns, t_max=args.t_max, replicas=args.replicas,
                             record_every=args.record_every, seed=args.seed,
                             threads=args.threads, init=init, progress=not args.quiet,
                             attrs=_run_attrs(args), sim_method=methods)
    if not args.quiet:
        print(cmp)
    log.info("wrote %s (%.1f s)", ", ".join(str(f) for f in files), time.perf_counter() - t0)
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    """Print the fixed points and thresholds, optionally also as JSON (``linvae stability``)."""
    from .errors import TooLargeError
    from .ode import layout
    from .stability import stability_report
    from .stability.search import MAX_STATE_SIZE, check_size

    # every input is checked before the start line and the work
    p = _params(args)
    try:
        check_size(p)
    except TooLargeError:  # its message explains the cost at length; one line here
        raise UsageError(("M", "M_star"), f"{layout(p).size} state entries; the fixed-point "
                         f"search takes at most {MAX_STATE_SIZE} (its cost grows like M^6)"
                         ) from None
    if args.alpha is not None:
        from .stability.statics import check_alpha

        try:
            check_alpha(args.alpha)
        except ValueError:
            raise UsageError("alpha", "must be > 0 and finite", value=args.alpha) from None
        if p.beta_inf <= 0.0:
            raise UsageError("beta", "must be > 0 with --alpha (the encoder variances go to "
                             "0 at the minimum)", value=p.beta_inf)
    if args.out is not None:
        _check_out_file(args.out)
    log.info("fixed points and thresholds for %r", p)
    report = stability_report(p, step_limit=args.step_limit)
    print(report)
    out = report.to_dict()
    if args.alpha is not None:
        from .stability import training_minimum

        minimum = training_minimum(p, args.alpha)
        print(minimum)
        out["training_minimum"] = minimum.to_dict()
    if args.out is not None:
        from .io import write_text

        write_text(args.out, json.dumps(out, indent=2))
        log.info("wrote %s", args.out)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the standard figure of a result file (``linvae plot``).

    For a simulation it includes the predicted finite-N band unless --no-theory is given.
    """
    from .io import load
    from .plot import plot_result, save_figure

    # every input is checked before any work
    if not args.file.is_file():
        raise UsageError("file", "does not exist", value=args.file)
    try:
        ds = load(args.file)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError("file", f"is not a linvae result ({first})", value=args.file) from None
    outs = args.out or [args.file.with_suffix(".png")]
    for o in outs:
        if o.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise UsageError("out", "must end in .png, .pdf or .svg", value=o)
        _check_out_file(o)
    extra = [str(d) for d in ds.dims if d not in ("replica", "t", "latent", "latent2", "factor")]
    if extra:
        raise UsageError("file", f"holds more than one run (dims {', '.join(extra)}: a merged "
                         f"sweep?); plot one point's own file", value=args.file)
    series = [str(v) for v in ds.data_vars if "t" in ds[v].dims]
    bad = [v for v in args.variables or () if v not in series]
    if bad:
        raise UsageError("variables", f"not in the file; it has {', '.join(series)}",
                         value=" ".join(bad))
    theory = None
    if not args.no_theory and ds.attrs.get("kind") == "simulation":
        from .finite_n import predicted_spread

        try:
            theory = predicted_spread(ds)
        except Exception as exc:  # noqa: BLE001 - the band is an extra: plot without it
            log.warning("linvae plot: no predicted band (%s)",
                        " ".join(str(exc).split())[:200] or type(exc).__name__)
    fig = plot_result(ds, variables=args.variables, title=args.title, theory=theory)
    for o in outs:
        save_figure(fig, o, dpi=args.dpi)
        log.info("wrote %s", o)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Regenerate the figure families (``linvae reproduce``); return 1 if any of them failed."""
    from .reproduce import reproduce

    out = _check_out_dir(args.out)  # reproduce checks the rest and says what it starts
    report = reproduce(out, quick=args.quick, progress=not args.quiet, threads=args.threads,
                       only=args.only)
    failed = [f for f in report.families if not f.ok]
    if failed:
        for f in failed:
            print(f"linvae reproduce: figure family {f.name!r} failed: {f.error}",
                  file=sys.stderr)
        return 1
    return 0


# -- parser ---------------------------------------------------------------------------

def _axis_value(text: str) -> Any:
    """Parse a grid value from the command line: an int, a float, or else the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _shard(text: str | None) -> Any:
    if text is None or text == "env":
        return text
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError("shard", "must be i/n (e.g. 3/16) or env") from None
    if not 0 <= i < n:
        raise UsageError("shard", f"must be i/n with 0 <= i < n (shards 0 to {n - 1} of {n})"
                         if n > 0 else "must be i/n with n >= 1")
    return (i, n)


def _bare_rule(exc: BaseException, name: str) -> str:
    """Return the rule of a library message about ``name``.

    "beta must be >= 0, got -1" is "must be >= 0".
    """
    text = _one_line(exc)
    if text.startswith(f"{name} "):
        text = text[len(name) + 1:]
    return re.sub(r"^((?:must|needs) .+?), got .*$", r"\1", text)


# the flags of the sweep command that set the task setting of the same name: a task takes
# those it is registered with (linvae.sweeps.register_task(..., cli_settings=...)),
# replicas as the grid's replicas; grid axes win over them
SWEEP_TASK_FLAGS = ("N", "t_max", "record_every", "replicas", "seed", "method")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a parameter sweep over the grid axes, or merge a sweep's results (``linvae sweep``).

    Returns 1 unless every selected point of the grid has a result, else 0.
    """
    import math

    from ._validate import check_int, check_real
    from .params import FIELDS
    from .sweeps import Grid, open_sweep, sweep, task_cli_settings

    if args.merge:
        target = args.to if args.to is not None else Path(args.out) / "merged.nc"
        _check_out_file(target, "to" if args.to is not None else "out")
        ds = open_sweep(args.out)
        t0 = time.perf_counter()
        args.out = target
        log.info("merged %s: %s", target, dict(ds.sizes))
        return _save_result(ds, args, t0)
    # every input is checked before the start line and the work
    p = _params(args)
    shard = _shard(args.shard)
    if not args.axis:
        raise UsageError("axis", "needs at least one grid axis, e.g. --axis beta 0.5 1.0 1.5")
    axes: dict[str, Any] = {}
    for name, *values in args.axis:
        if not values:
            raise UsageError("axis", "needs at least one value after the name", value=name)
        axes[name] = [_axis_value(v) for v in values]
    names = task_cli_settings(args.task)
    unknown = [k for k in names if k not in SWEEP_TASK_FLAGS]
    if unknown:
        raise UsageError((), f"task {args.task!r} is registered to take {unknown[0]!r} from "
                         f"the command line, which has no flag for it")
    replicas = args.replicas if "replicas" in names else None
    try:
        grid = Grid.zip(replicas=replicas, **axes) if args.zip else Grid(replicas=replicas,
                                                                         **axes)
    except (TypeError, ValueError) as exc:
        raise UsageError("axis", _one_line(exc), value=" ".join(axes)) from None
    settings = {k: getattr(args, k) for k in names if k != "replicas" and k not in axes}
    # each axis value as the model or the task would take it, one at a time
    model = {f.name for f in FIELDS}
    run_rules = {"N": ("int", 1), "seed": ("int", 0), "t_max": ("real", 0.0),
                 "record_every": ("real", 0.0)}
    for name, values in axes.items():
        for v in values:
            try:
                if name in model:
                    p.replace(**{name: v})
                elif name in run_rules:
                    kind, low = run_rules[name]
                    if kind == "int":
                        check_int(name, v, ge=int(low))
                    else:
                        check_real(name, v, gt=low)
            except (TypeError, ValueError) as exc:
                raise UsageError("axis", _bare_rule(exc, name), value=f"{name} {v}") from None
    for name in ("t_max", "record_every"):
        if name in settings:
            check_real(name, settings[name], gt=0.0)
    if "record_every" in settings:
        longest = max(axes.get("t_max", [settings.get("t_max", math.inf)]))
        if isinstance(longest, int | float) and settings["record_every"] > longest:
            raise UsageError("record_every", f"must be <= --t-max ({_show(longest)})")
    _check_out_dir(args.out)
    log.info("sweep %s over %s -> %s", args.task,
             dict(zip(grid.dims, grid.shape, strict=True)), args.out)
    res = sweep(p, grid, task=args.task, out=args.out, executor=args.executor,
                max_workers=args.workers, threads_per_task=args.threads_per_task,
                shard=shard, progress=not args.quiet, **settings)
    return 0 if res.ok else 1


COMMANDS = ("info", "simulate", "ode", "compare", "stability", "plot", "reproduce", "sweep")


def _add_init_flags(group: argparse._ArgumentGroup, default: str, choices: Sequence[str]
                    ) -> None:
    random = ("'random' = W, V i.i.d. N(0, 1), D = 1; " if "random" in choices else
              "not 'random' (m = d = 0 is a fixed point of the ODEs); ")
    group.add_argument("--init", choices=list(choices), default=None,
                       help=f"start at t = 0 (default: {default}): {random}"
                            "'overlap' = m = d = c I, Q = E = I, R = c^2 I, "
                            "D = 1 (docs/model.md#initial-states) with c = --overlap")
    group.add_argument("--overlap", type=float, default=0.5,
                       help="teacher overlap c of the 'overlap' start (|c| <= 1)")
    group.add_argument("--init-from", type=Path, default=None, metavar="FILE",
                       help="start from the (replica-mean) t = 0 state of a result file")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``linvae`` command and its subcommands."""
    from .data import FACTOR_FAMILIES, NOISE_FAMILIES, ORDERS

    parser = _Parser(
        prog="linvae", description="Learning dynamics of the linear VAE: one-pass SGD at "
        "large N and its limiting ODEs. Symbols follow docs/model.md (N input dimension, M "
        "latents, M* factors, rho signal, eta noise, beta KL weight, lam L2, tau learning "
        "rate, t = steps/N; order parameters m, d, Q, E, R, D and eps_g = eg).",
        epilog="Every flag can also be set in a TOML file given with --config (keys = flag "
        "names with underscores; [model] for the model, [run] for run settings).")
    _add_quiet(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=description)
        parsers[name] = sp
        return sp

    info = add("info", "version, build flags, SIMD level, threads, Eigen",
               "Print the version and how the compiled core was built.")
    _add_quiet(info, help_="no effect (accepted for symmetry)")
    info.set_defaults(func=cmd_info)

    # simulate
    sim = add("simulate", "run one-pass SGD and write the order parameters",
              "Run one-pass SGD (docs/model.md#sgd) for several replicas and write m, d, "
              "Q, E, R, D, eps_g (eg), rate, distortion and loss over time t = steps/N to "
              "netCDF, with every parameter in the file's attributes.")
    _add_common(sim)
    _add_model_flags(sim)
    run = sim.add_argument_group("run")
    for name in ("N", "t_max", "record_every"):
        _add_run_flag(run, name)
    run.add_argument("--seeds", type=_int_flag("seeds", ge=1), default=4,
                     help="number of independent replicas")
    for name in ("seed", "threads"):
        _add_run_flag(run, name)
    run.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                     help="precision of the weights")
    data = sim.add_argument_group("data (docs/model.md#data-families, #finite-datasets)")
    data.add_argument("--noise", choices=list(NOISE_FAMILIES), default="gaussian",
                      help="distribution of the background noise n, each of variance 1: "
                           "all have the Gaussian's first two moments and ODE limit")
    data.add_argument("--noise-df", type=float, default=None, metavar="NU",
                      help="degrees of freedom nu > 2 of --noise student_t")
    data.add_argument("--factors", choices=list(FACTOR_FAMILIES), default="gaussian",
                      help="distribution of the factors c")
    data.add_argument("--dataset-size", type=_int_flag("dataset-size", ge=1), default=None,
                      metavar="P", help="train on a finite dataset of P samples, reused over "
                                        "epochs (default: a fresh sample every step)")
    data.add_argument("--order", choices=list(ORDERS), default="shuffle",
                      help="order of the visits to the dataset: a new permutation every "
                           "epoch, or mu = step mod P")
    data.add_argument("--dataset-seed", type=_int_flag("dataset-seed", ge=0), default=None,
                      help="one dataset of this seed for every replica (default: one per "
                           "replica, from --seed)")
    data.add_argument("--training-loss", action="store_true",
                      help="also record the loss over the P training samples (each record "
                           "then costs P passes over the weights)")
    _add_run_flag(run, "method")
    _add_init_flags(run, "random", ["random", "overlap"])
    run.add_argument("--checkpoint", type=Path, default=None,
                     help="save the run state to this file periodically, on Ctrl-C or "
                          "SIGTERM, and at the end, and keep it (default: OUT.ckpt, removed "
                          "once the result is written)")
    run.add_argument("--checkpoint-every", type=float, default=600.0,
                     help="seconds of wall time between checkpoints")
    run.add_argument("--resume", type=Path, default=None,
                     help="continue the run saved in this checkpoint")
    run.add_argument("--stop-signal", action="append", default=[],
                     choices=["USR1", "USR2", "HUP", "XCPU"],
                     help="also stop like Ctrl-C (checkpoint, partial result, exit 128 + "
                          "signal number) on this signal, e.g. USR1 for sbatch "
                          "--signal=B:USR1@120; SIGINT and SIGTERM always do (repeatable; "
                          "default: none)")
    _add_out(run, "simulate", "netcdf")
    sim.set_defaults(func=cmd_simulate)

    # ode
    from .ode import METHODS

    ode = add("ode", "integrate the limiting ODEs and write the trajectory",
              "Integrate the N -> infinity ODEs (docs/model.md#odes) and write m, d, Q, E, "
              "R, D, eps_g (eg), rate, distortion and loss over t to netCDF. The start is "
              "a prescribed overlap state (m = d = 0 is a fixed point) or a result file's "
              "t = 0 state.")
    _add_common(ode)
    _add_model_flags(ode)
    run = ode.add_argument_group("run")
    for name in ("t_max", "record_every"):
        _add_run_flag(run, name)
    # the ODE solver, a setting of its own that shares the name of SGD's --method
    run.add_argument("--method", choices=list(METHODS), default="auto",
                     help="ODE solver: auto (compiled RK45, switching to compiled Radau "
                          "while stiff), RK45 or Radau (compiled), or a SciPy method")
    run.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance")
    run.add_argument("--atol", type=float, default=1e-10, help="absolute tolerance")
    _add_init_flags(run, "overlap", ["overlap"])
    _add_out(run, "ode", "netcdf")
    ode.set_defaults(func=cmd_ode)

    # compare
    cmp = add("compare", "SGD at several N against the ODE; gap vs N",
              "Run SGD at several N and the ODE from the same prescribed start; measure "
              "the SGD-ODE gap per order parameter and its exponent in N (theory: -1/2). "
              "Writes compare_ode.nc, compare_sim_N<N>.nc (one per N), compare_gaps.nc "
              "and compare.png/.pdf into --out.")
    _add_common(cmp)
    _add_model_flags(cmp)
    run = cmp.add_argument_group("run")
    run.add_argument("--Ns", type=_int_flag("Ns", ge=1), nargs="+",
                     default=[1000, 4000, 16000],
                     help="input dimensions N (at least two)")
    _add_run_flag(run, "t_max")
    # more replicas than elsewhere: compare measures their spread against the predicted
    # one, whose sampling error is about 1/sqrt(2 replicas)
    _add_run_flag(run, "replicas", default=8)
    for name in ("record_every", "seed", "threads"):
        _add_run_flag(run, name)
    _add_run_flag(run, "method", per_N=True)
    _add_init_flags(run, "overlap", ["overlap"])
    _add_out(run, "compare", "folder")
    cmp.set_defaults(func=cmd_compare)

    # stability
    st = add("stability", "fixed points and thresholds of the ODEs",
             "Find every fixed point of the ODEs (root finding from many starts) with its "
             "stability, then the numerical thresholds: posterior collapse of each factor "
             "(theory beta = rho_k + eta), noise fitting of a superfluous latent (theory "
             "beta = eta) and the annealing rate gamma* = -J_max/2.")
    _add_common(st)
    _add_model_flags(st)
    run = st.add_argument_group("run")
    run.add_argument("--step-limit", action="store_true",
                     help="also find the step-size stability limit tau_max (slower)")
    run.add_argument("--alpha", type=float, default=None,
                     help="also the minimum of the training loss on P = alpha N samples as "
                     "N -> infinity (docs/model.md#training-minimum): each latent's "
                     "eigenvalue and collapse threshold, eps_g and the losses (> 0)")
    _add_out(run, "stability", "json")
    st.set_defaults(func=cmd_stability)

    # plot
    pl = add("plot", "draw the standard figure of a result file",
             "Read a result of 'linvae simulate' or 'linvae ode' and draw the order "
             "parameters m, d, Q, E, R, D and eps_g over t (replicas: mean +- 2 sd). For a "
             "simulation it adds the ODE from the same start with the predicted band "
             "ODE +- 2 sigma/sqrt(N) of the linear noise approximation "
             "(docs/model.md#fluctuations).")
    _add_common(pl)
    pl.add_argument("file", type=Path, help="netCDF result file")
    _add_out(pl, "plot", "figures")
    pl.add_argument("--variables", nargs="+", default=None,
                    help="variables to draw (default: m d Q E R D eg)")
    pl.add_argument("--title", default=None, help="figure title (default: the parameters)")
    pl.add_argument("--dpi", type=_int_flag("dpi", ge=1), default=150,
                    help="resolution of PNG output")
    pl.add_argument("--no-theory", action="store_true",
                    help="leave out the ODE and its predicted band ODE +- 2 sigma/sqrt(N)")
    pl.set_defaults(func=cmd_plot)

    # reproduce
    from .reproduce import families as figure_families

    listed = ", ".join(f"{i} {f.name} ({f.about})"
                       for i, f in enumerate(figure_families(), start=1))
    rp = add("reproduce", "regenerate every figure family of the paper",
             "Regenerate the paper's figure families into a folder, PNG and PDF each, with "
             "the data (netCDF) next to them and summary.md (measured thresholds and "
             f"exponents next to the theory, run times): {listed}. "
             "About 340 s on 2 cores; --quick about 45 s.")
    _add_common(rp)
    rp.add_argument("--out", type=Path, default=Path("linvae-reproduce"),
                    help="output folder (created if missing)")
    rp.add_argument("--quick", action="store_true",
                    help="smaller N, fewer replicas and grid points (about 45 s)")
    rp.add_argument("--only", nargs="+", choices=[f.name for f in figure_families()],
                    default=None,
                    help="run only these figure families")
    rp.add_argument("--threads", type=_int_flag("threads", ge=1), default=None,
                     help="OpenMP threads (default: all)")
    rp.set_defaults(func=cmd_reproduce)

    # sweep
    from .sweeps import registered_tasks, task_cli_settings

    sw = add("sweep", "run a grid of parameters, resumable, on processes or a cluster",
             "Run a task at every point of a grid of parameters; each point writes its own "
             "result file (named by a hash of its parameters) into --out, so a re-run skips "
             "finished points and an interrupted sweep resumes. Failed points are recorded "
             "and the rest go on. Axes may be any model symbol (M, M_star, rho, eta, beta, "
             "lam, tau) or a task setting (N, t_max, record_every, seed). On a cluster "
             "without Dask, run shards of the grid as a job array (--shard env reads "
             "SLURM_ARRAY_TASK_ID), then merge with --merge.")
    _add_common(sw)
    _add_model_flags(sw)
    run = sw.add_argument_group("sweep")
    run.add_argument("--axis", nargs="+", action="append", default=None, metavar="NAME V",
                     help="a grid axis and its values, e.g. --axis beta 0.5 1 1.5 (repeat "
                          "for more axes: cartesian product)")
    run.add_argument("--zip", action="store_true", help="vary the axes together instead")
    run.add_argument("--task", choices=registered_tasks(), default="simulate",
                     help="what to run at each point")
    _add_out(run, "sweep", "folder")
    run.add_argument("--executor", choices=["local", "serial", "dask"], default="local",
                     help="local processes, in-process, or the current dask Client")
    run.add_argument("--workers", type=_int_flag("max_workers", ge=1), default=None,
                     help="worker processes (default: CPUs // threads per task)")
    run.add_argument("--threads-per-task", type=_int_flag("threads_per_task", ge=1),
                     default=1,
                     help="OpenMP threads of each task (workers x threads <= cores)")
    run.add_argument("--shard", default=None, metavar="i/n",
                     help="run only the points of shard i of n, or 'env' for a SLURM array")
    run.add_argument("--merge", action="store_true",
                     help="merge the results in --out into one netCDF file and exit")
    run.add_argument("--to", type=Path, default=None,
                     help="with --merge: the merged file (default: OUT/merged.nc)")
    takes = "; ".join(f"{t}: {', '.join(_flag(n) for n in task_cli_settings(t)) or 'none'}"
                      for t in registered_tasks())
    settings = sw.add_argument_group(
        "task settings", f"passed to each point's task if it takes them ({takes})")
    for name in SWEEP_TASK_FLAGS:
        _add_run_flag(settings, name)
    sw.set_defaults(func=cmd_sweep)

    parser._linvae_subparsers = parsers  # type: ignore[attr-defined]
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str],
           first: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """Parse again if a config is given: the file sets defaults, the flags win.

    Returns the arguments and the settings the config set.
    """
    from .config import apply_config, load_config

    args = first
    if getattr(args, "config", None) is None:
        return args, []
    subs: dict[str, argparse.ArgumentParser] = parser._linvae_subparsers  # type: ignore[attr-defined]
    known = {a.dest for sp in subs.values() for a in sp._actions}
    data = load_config(args.config)
    applied = apply_config(subs[args.command], data, args.command, COMMANDS, known)
    args = parser.parse_args(argv)
    log.debug("config %s applied", args.config)
    return args, list(applied)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a simulation's run loop: unwinds like Ctrl-C.

    So temporary files are removed and the exit status is the conventional 143.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {_signal_name(signum)}")
        self.signal = signum


@contextlib.contextmanager
def _sigterm_like_ctrl_c() -> Iterator[None]:
    """Make SIGTERM end any command as Ctrl-C does; restore the previous handler afterwards.

    Simulate's run loop takes SIGTERM over while it runs, to write its checkpoint.
    """
    import signal
    import threading

    old = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or old in (
            signal.SIG_IGN, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _one_line_warnings(command: str) -> Callable[..., None]:
    """Return a warnings.showwarning that prints the message alone, on one line.

    Without file, line and source.
    """

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        print(f"{command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status.

    0 success; 1 the computation failed (the ODE integration failed, every replica
    diverged, a figure family or sweep point failed, or an internal error); 2 a user
    mistake (bad value, unreadable config, unwritable output, a size refused up front);
    128 + signal number when stopped by a signal (130 Ctrl-C, 143 SIGTERM).
    """
    import os

    from .config import ConfigError
    from .errors import IntegrationError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = "linvae"
    context: _Context | None = None
    lib_log, drop = logging.getLogger("linvae.simulation"), _DropStopNotice()
    lib_log.addFilter(drop)
    try:
        with warnings.catch_warnings(), _sigterm_like_ctrl_c():
            parser = build_parser()  # inside: a Ctrl-C while it imports is one line too
            first = parser.parse_args(argv)  # --help, or an error it says: SystemExit
            command = f"linvae {first.command}"
            subs = parser._linvae_subparsers  # type: ignore[attr-defined]
            context = _Context(command, subs[first.command], argv, first)
            warnings.showwarning = _one_line_warnings(command)
            args, from_config = _parse(parser, argv, first)
            context.args, context.from_config = args, set(from_config)
            args.argv = argv
            logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                                format="linvae: %(message)s")
            # the root logger's INFO level is for linvae: fontTools, which subsets the
            # fonts of every PDF figure, says "pruned"/"dropped" for each table at INFO
            logging.getLogger("fontTools").setLevel(logging.WARNING)
            if args.quiet:
                warnings.filterwarnings("ignore", category=UserWarning, module="tqdm")
            return int(args.func(args))
    except ConfigError as exc:
        print(_config_error(context, command, exc), file=sys.stderr)
        return 2
    except IntegrationError as exc:  # a failed computation, not a bad command line
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, MemoryError, RuntimeError) as exc:
        line = (context.error(exc) if context is not None
                else _error_line(command, "", _one_line(exc), see_help=False))
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signal", 2))
        print(f"{command}: interrupted by {_signal_name(signum)}", file=sys.stderr)
        return 128 + signum
    except Exception as exc:
        if os.environ.get("LINVAE_DEBUG"):
            raise
        print(f"{command}: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
              f"linvae: please report it with this command line; LINVAE_DEBUG=1 shows the "
              f"traceback)", file=sys.stderr)
        return 1
    finally:
        lib_log.removeFilter(drop)


def _config_error(context: _Context | None, command: str, exc: Exception) -> str:
    """Return the error line of an unreadable or invalid config: ``--config FILE: RULE``."""
    text = _one_line(exc)
    path = getattr(context.args if context else None, "config", None)
    rule = re.sub(r"^config(?: file '[^']*')?:? ", "", text)
    rule = re.sub(r"^bad value for (\w+): (?=\1 )", "", rule)  # "N must be an integer, ..."
    if context is None or path is None:
        return _error_line(command, "", text)
    return context.line(f"--config {path}", rule)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
