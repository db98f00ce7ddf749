#!/usr/bin/env python3
"""Checks on the documentation that a Sphinx build with -W does not make.

    python scripts/check-docs-html.py [HTML_DIR]      # default: docs/_build/html

1. **Scrambled API entries.** napoleon reads the first line of an attribute, property or
   data docstring as ``type: description`` when it holds a colon (outside ``literals``
   and roles), so "Replicas per point (None: the task's default)." renders as the text
   "the task's default)." with a field "Type: Replicas per point (None". linvae's API
   writes its types in the signatures (``autodoc_typehints = "signature"``), so a "Type"
   field in the built HTML always comes from such a colon: every one is an error. The
   fix is to reword the docstring's first line without a colon.
2. **References that are not links.** A reference to a page and anchor written as plain
   text, ``docs/model.md#odes`` or ``model.md#odes``, outside a Markdown link, in the
   text of a page of docs/ or in the part of another file (README.md) that a page
   includes: what the site shows. Code blocks and ``code spans`` are literal text and
   are not checked; CHANGELOG.md, the project's history, is not checked either. Write
   ``[the ODEs](model.md#odes)`` instead.

Exit code 0 if both checks pass, 1 otherwise (with one line per finding).
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: files a page may include whose text is not checked: the history is not rewritten
UNCHECKED_INCLUDES = {"CHANGELOG.md"}

# -- 1. "Type" fields of API entries -------------------------------------------------------


class _Fields(HTMLParser):
    """The fields of a page's API entries, as (entry id, field name, field text).

    A field is ``<dt class="field-odd">Type<span class="colon">:</span></dt><dd>...</dd>``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.entry = "?"                 # id of the last API signature seen
        self.fields: list[tuple[str, str, str]] = []   # (entry, name, value)
        self.n_field_names = 0
        self._in_name = self._in_value = False
        self._depth = 0                  # <dd> nesting inside the current field value
        self._name = self._value = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "dt" and "sig" in cls and a.get("id"):
            self.entry = a["id"] or "?"
        elif tag == "dt" and any(c.startswith("field-") for c in cls):
            self._in_name, self._name = True, ""
        elif tag == "dd" and self._in_value:
            self._depth += 1
        elif tag == "dd" and any(c.startswith("field-") for c in cls):
            self._in_value, self._depth, self._value = True, 1, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "dt" and self._in_name:
            self._in_name = False
            self.n_field_names += 1
        elif tag == "dd" and self._in_value:
            self._depth -= 1
            if self._depth == 0:
                self._in_value = False
                name = self._name.strip().rstrip(":").strip()
                self.fields.append((self.entry, name, " ".join(self._value.split())))

    def handle_data(self, data: str) -> None:
        if self._in_name:
            self._name += data
        elif self._in_value:
            self._value += data


def type_fields(html_dir: Path) -> tuple[list[str], int]:
    """One line per "Type" field in the built pages, and the number of fields seen."""
    problems: list[str] = []
    n_fields = 0
    for page in sorted(html_dir.glob("*.html")):
        parser = _Fields()
        parser.feed(page.read_text(encoding="utf-8"))
        n_fields += parser.n_field_names
        for entry, name, value in parser.fields:
            if name.lower() == "type":
                problems.append(f"{page.name}: {entry}: a 'Type: {value}' field; the first "
                                f"line of its docstring has a colon that napoleon reads as "
                                f"'type: description' (reword it without the colon)")
    return problems, n_fields


# -- 2. plain-text page#anchor references ------------------------------------------------

REFERENCE = re.compile(r"(?<![\w./-])(?:[\w.-]+/)*[\w-]+\.md#[\w-]+")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK_TARGET = re.compile(r"\]\([^)]*\)|^\s*\[[^\]]+\]:\s*\S+|<[a-z]+:[^>]*>")
INCLUDE = re.compile(r"^\s*(?::{3,}|`{3,})\{include\}\s+(\S+)\s*$")
OPTION = re.compile(r"^\s*:([\w-]+):\s*(.*?)\s*$")


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def plain_references(path: Path, lines: list[str], first: int = 1) -> list[tuple[str, str]]:
    """(``file:line``, reference) for each page#anchor reference in plain text."""
    found: list[tuple[str, str]] = []
    fence = ""
    for lineno, line in enumerate(lines, start=first):
        m = FENCE.match(line)
        if fence:  # inside a code block: only its closing fence matters
            closing = line.strip()
            if closing.startswith(fence) and set(closing) == {fence[0]}:
                fence = ""
            continue
        if m and "{" not in line:  # a code block opens (a ```{directive} is not one)
            fence = m[1]
            continue
        text = LINK_TARGET.sub(" ", INLINE_CODE.sub(" ", line))
        found += [(f"{path.relative_to(ROOT)}:{lineno}", ref) for ref in REFERENCE.findall(text)]
    return found


def included_part(page: Path, lines: list[str], at: int) -> tuple[Path, list[str], int] | None:
    """Return the file and the lines that the include directive at line ``at`` shows."""
    m = INCLUDE.match(lines[at])
    if m is None:
        return None
    options: dict[str, str] = {}
    for line in lines[at + 1:]:
        o = OPTION.match(line)
        if o is None:
            break
        options[o[1]] = _unquote(o[2])
    source = (page.parent / m[1]).resolve()
    if source.name in UNCHECKED_INCLUDES or not source.is_file():
        return None
    text = source.read_text(encoding="utf-8")
    start, end = 0, len(text)
    if "start-after" in options:
        i = text.find(options["start-after"])
        start = i + len(options["start-after"]) if i >= 0 else 0
    if "end-before" in options:
        j = text.find(options["end-before"], start)
        end = j if j >= 0 else end
    first = text.count("\n", 0, start) + 1
    return source, text[start:end].split("\n"), first


def unlinked_references() -> list[str]:
    """One line per plain-text page#anchor reference that the pages of docs/ show."""
    problems: set[str] = set()
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        shown = [(where, ref, "") for where, ref in plain_references(page, lines)]
        for at in range(len(lines)):
            part = included_part(page, lines, at)
            if part is not None:
                shown += [(where, ref, f" (shown on {page.relative_to(ROOT)})")
                          for where, ref in plain_references(*part)]
        for where, ref, on in shown:
            in_docs = where.startswith("docs/")  # links from README.md start at the root
            target = ref.removeprefix("docs/") if in_docs else "docs/" + ref.removeprefix("docs/")
            problems.add(f"{where}: {ref}{on}: a page#anchor reference in plain text; make "
                         f"it a Markdown link, [text]({target})")
    return sorted(problems)


def main(argv: list[str]) -> int:
    """Run both checks on the built site ``argv[1]``; 1 if anything was found."""
    html_dir = Path(argv[1]) if len(argv) > 1 else DOCS / "_build" / "html"
    problems: list[str] = []
    api = html_dir / "api.html"
    if not api.is_file():
        problems.append(f"{api} is missing: build the site first")
    else:
        fields, n_fields = type_fields(html_dir)
        problems += fields
        if n_fields == 0:  # the API page has Parameters fields: the markup must have changed
            problems.append(f"no field lists found in {html_dir}; is the pattern stale?")
    problems += unlinked_references()
    for p in problems:
        print(f"check-docs-html: {p}")
    print(f"check-docs-html: {'FAIL' if problems else 'ok'} ({len(problems)} problem(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
