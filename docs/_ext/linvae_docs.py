"""Sphinx extensions of the linvae documentation.

* ``linvae-api``: the API reference of every name in ``linvae.__all__`` (modules with
  their members, classes, functions, data), generated from ``__all__`` at build time so
  that it follows the public namespace;
* ``linvae-cli``: the ``--help`` of ``linvae`` and of each of its commands, from the
  argparse parser that ``linvae.cli.build_parser`` builds, so the CLI reference is the
  program's own;
* the explicit anchors of the Markdown pages (``<a id="odes"></a>`` on a line of its own,
  which GitHub shows as link targets) become MyST targets, so that ``model.md#odes`` and
  ``#odes`` links resolve in the HTML too. Only the text Sphinx reads is changed, not
  the file;
* ``|x|`` in a docstring is an absolute value, not a reStructuredText substitution: the
  bars are escaped before the docstring is parsed (outside ``literals``);
* a sphinx-gallery image scraper for the figures linvae's plotting functions return
  (``matplotlib.figure.Figure`` objects made without pyplot, which the matplotlib
  scraper does not see): every new one an example holds in a variable is shown;
* a link of an included page to a file of the repository that is not a page (the
  README's ``[examples/run.toml](examples/run.toml)``) becomes the file's name in code
  style instead of a broken link; a link to anything else that does not exist still
  warns.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ANCHOR_LINE = re.compile(r'^<a\s+id="([A-Za-z0-9_-]+)"\s*>\s*</a>\s*$', re.MULTILINE)


def _anchors_to_targets(app: Sphinx, docname: str, source: list[str]) -> None:
    source[0] = ANCHOR_LINE.sub(r"(\1)=", source[0])


class RepositoryFileLinks(SphinxPostTransform):
    """Unresolvable MyST links to existing files of the repository -> literal text."""

    default_priority = 8  # before MyST's resolver (9), which would warn

    def run(self, **kwargs: Any) -> None:
        root = (Path(self.env.srcdir) / "..").resolve()
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") == "doc":
                continue
            target = str(node["reftarget"]).split("#")[0]
            path = (root / target).resolve()
            if target and path.is_file() and path.is_relative_to(root):
                node.replace_self(nodes.literal(target, node.astext() or target))


LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                 lines: list[str]) -> None:
    for i, line in enumerate(lines):
        if "|" in line and not line.lstrip().startswith((">>>", "...")):  # not doctests
            parts = LITERAL.split(line)
            lines[i] = "".join(p if p.startswith("``") else p.replace("|", r"\|")
                               for p in parts)


def _kind(obj: Any) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


class ApiDirective(SphinxDirective):
    """Autodoc entries for ``<package>.__all__``, grouped by kind (in an .rst page: the
    entries are reStructuredText, which autodoc needs)."""

    required_arguments = 0
    optional_arguments = 1  # the package, default linvae
    option_spec: ClassVar[dict[str, Any]] = {}

    ORDER = ("class", "function", "exception", "data", "module")
    TITLES: ClassVar[dict[str, str]] = {"class": "Classes", "function": "Functions", "exception": "Exceptions and warnings",
              "data": "Data", "module": "Modules"}

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0] if self.arguments else "linvae"
        mod = importlib.import_module(package)
        names = list(mod.__all__)
        objects = {name: getattr(mod, name) for name in names}
        top_level = {id(obj) for obj in objects.values()}
        lines: list[str] = []
        for kind in self.ORDER:
            members = sorted((n for n in names if _kind(objects[n]) == kind),
                             key=lambda n: n.strip("_").lower())
            if not members:
                continue
            lines += [self.TITLES[kind], "-" * len(self.TITLES[kind]), ""]
            for name in members:
                obj = objects[name]
                if kind == "module":
                    # its own names, except those documented above under linvae.<name>
                    sub = getattr(obj, "__all__", None)
                    public = sub if sub is not None else [
                        n for n, v in vars(obj).items() if not n.startswith("_")
                        and getattr(v, "__module__", None) == obj.__name__]
                    skip = [n for n in public if id(getattr(obj, n, None)) in top_level]
                    lines += [f".. automodule:: {obj.__name__}"]
                    if sub is not None:
                        lines += ["   :members:"]
                    if skip:
                        lines += [f"   :exclude-members: {', '.join(sorted(skip))}"]
                    lines += [""]
                elif kind == "data":
                    lines += [f".. autodata:: {package}.{name}", "   :annotation:", ""]
                elif kind == "function":
                    lines += [f".. autofunction:: {package}.{name}", ""]
                else:
                    lines += [f".. autoclass:: {package}.{name}",
                              "   :show-inheritance:", ""]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="linvae-api"), node)
        return node.children


@contextlib.contextmanager
def _plain_terminal() -> Iterator[None]:
    """A fixed width and no colours for argparse's help, whatever the build's terminal."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    os.environ.update(COLUMNS="88", NO_COLOR="1")
    os.environ.pop("FORCE_COLOR", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class CliDirective(SphinxDirective):
    """``linvae --help``, then one section per command with its ``--help``."""

    required_arguments = 0
    option_spec: ClassVar[dict[str, Any]] = {"module": directives.unchanged,
                                             "func": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.options.get("module", "linvae.cli"))
        parser: argparse.ArgumentParser = getattr(module, self.options.get("func", "build_parser"))()
        with _plain_terminal():
            out: list[nodes.Node] = [self._help(parser)]
            for action in parser._subparsers._group_actions if parser._subparsers else []:
                if not isinstance(action, argparse._SubParsersAction):
                    continue
                for name, sub in action.choices.items():
                    section = nodes.section(ids=[nodes.make_id(f"cli-{name}")],
                                            names=[nodes.fully_normalize_name(f"linvae {name}")])
                    section += nodes.title(text=f"linvae {name}")
                    section += self._help(sub)
                    self.state.document.note_implicit_target(section, section)
                    out.append(section)
        return out

    @staticmethod
    def _help(parser: argparse.ArgumentParser) -> nodes.literal_block:
        text = parser.format_help().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return block


_SHOWN: dict[str, set[int]] = {}  # per example file: ids of the figures already shown


def _figure_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    shown = _SHOWN.setdefault(str(block_vars["src_file"]), set())
    figures = [v for v in block_vars["example_globals"].values()
               if isinstance(v, Figure) and v.canvas.manager is None  # not a pyplot figure
               and id(v) not in shown]
    paths = []
    for fig, path in zip(figures, block_vars["image_path_iterator"], strict=False):
        fig.savefig(path, dpi=100)
        shown.add(id(fig))
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


def _get_sg_image_scraper() -> Any:
    """The scraper, for ``sphinx_gallery_conf["image_scrapers"] = (..., "linvae_docs")``."""
    return _figure_scraper


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _anchors_to_targets)
    app.add_directive("linvae-api", ApiDirective)
    app.add_directive("linvae-cli", CliDirective)
    app.add_post_transform(RepositoryFileLinks)
    app.connect("autodoc-process-docstring", _escape_bars)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
