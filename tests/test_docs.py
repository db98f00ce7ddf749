"""Every fenced code block of README.md and docs/*.md runs, so the docs cannot rot.

How a block is treated depends on its fence language:

* ``python``: executed in-process, the blocks of one file in order and in one namespace
  (``__name__ == "__main__"``), in a temporary working directory, with matplotlib's Agg
  backend;
* ``bash``, ``sh``, ``console``: each command line (``linvae ...``, ``python examples/...``)
  runs through the shell in that directory (which holds a copy of ``examples/``) and must
  exit with 0; ``pip install ...`` lines are installation steps and are not run;
* ``toml``: parsed, and an excerpt of the file it is introduced as (``[path](path):``):
  every key it shows has the file's value;
* ``cpp``: an excerpt of the file it is introduced as (``[path](path):``, required): its
  lines appear in that file in the same order (indentation aside; a line ``// ...``
  stands for lines left out), so that a recipe cannot show code that is not there;
* no language or ``text``: output listings, directory trees, formulas; not run.

A block may be shrunk for the test by an HTML comment on the line(s) right before its
fence, invisible on GitHub:

    <!-- test: N=10_000 -> N=500, t_max=10.0 -> t_max=1.0 -->

a comma-separated list of literal substitutions ``old -> new``, applied in order before
the block runs (a side that contains a comma or an arrow is written in backticks,
`` `Ns=[1_000, 4_000]` -> `Ns=[200, 400]` ``). A substitution whose left side is not in
the block fails the test, so a marker cannot silently go stale. ``<!-- test: skip
(<reason>) -->`` skips a block, and is allowed only for a block that needs a SLURM
cluster or runs forever; one that needs dask runs when dask is installed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUN_PYTHON = ("python",)
RUN_SHELL = ("bash", "sh", "console")
NOT_RUN = ("", "text")
LANGUAGES = (*RUN_PYTHON, *RUN_SHELL, "toml", "cpp", *NOT_RUN)
#: why a block may be skipped (the reason of a skip marker must contain one of these)
SKIP_REASONS = ("needs a SLURM cluster", "runs forever")
#: the set-up commands of the README, verbatim
SETUP = ("pip install . && linvae reproduce", 'pip install ".[test]" && python -m pytest')

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*test:(?P<body>.*?)-->\s*$")
SIDE = r"(`[^`]*`|[^,`]*?)"
SUBSTITUTION = re.compile(rf"\s*{SIDE}\s*->\s*{SIDE}\s*(?:,|$)")


@dataclass
class Block:
    path: Path
    line: int                     # 1-based line of the opening fence
    lang: str
    code: str
    markers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the test markers right before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, start = len(m["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        assert i < len(lines), f"{path.name}:{start + 1}: unclosed code block"
        markers: list[str] = []
        j = start - 1
        while j >= 0 and (mm := MARKER.match(lines[j])) is not None:
            markers.insert(0, mm["body"].strip())
            j -= 1
        blocks.append(Block(path, start + 1, m["lang"], "\n".join(body) + "\n", markers))
        i += 1
    return blocks


def parse_substitutions(marker: str) -> list[tuple[str, str]]:
    """``a -> b, `c, d` -> e`` as [("a", "b"), ("c, d", "e")]."""
    subs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(marker):
        m = SUBSTITUTION.match(marker, pos)
        assert m is not None and m.end() > pos, f"bad test marker {marker!r} at {pos}"
        old, new = (s[1:-1] if s.startswith("`") else s.strip() for s in m.groups())
        assert old, f"empty left side in test marker {marker!r}"
        subs.append((old, new))
        pos = m.end()
    return subs


def skip_reason(block: Block) -> str | None:
    for marker in block.markers:
        m = re.fullmatch(r"skip\s*\((?P<reason>.+)\)", marker)
        if m is not None:
            reason = m["reason"].strip()
            assert any(r in reason for r in SKIP_REASONS), (
                f"{block.id}: a block may be skipped only if it "
                f"{' or '.join(SKIP_REASONS)}, not because {reason!r}")
            return reason
        assert not marker.startswith("skip"), f"{block.id}: write a skip as 'skip (reason)'"
    return None


def prepared(block: Block) -> str:
    """The block's code with its substitutions applied; fails on a stale one."""
    code = block.code
    for marker in block.markers:
        if marker.startswith("skip"):
            continue
        for old, new in parse_substitutions(marker):
            assert old in code, (f"{block.id}: the test marker replaces {old!r}, which is "
                                 f"not in the block (update the marker)")
            code = code.replace(old, new)
    return code


def shell_commands(code: str, console: bool = False) -> list[str]:
    """Command lines of a shell block (continuations joined; comments, blanks dropped).

    In a ``console`` block only the lines after a ``$`` prompt are commands, the others
    are their output.
    """
    commands: list[str] = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.strip()
        if console:
            if not line.startswith("$ "):
                continue
            line = line[2:].strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


ALL_BLOCKS = [b for path in DOCS for b in parse_blocks(path)]
#: what running a block may end with besides success: an error, a skip or a failure
BLOCK_OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


# -- one working directory and namespace per file, blocks run in order -----------------


class FileRun:
    """Runs a file's blocks in order in one temporary directory and Python namespace.

    Asking for block i first runs every earlier block that has not run yet, so that a
    block sees what the blocks before it made, whatever order pytest picks.
    """

    def __init__(self, path: Path, workdir: Path) -> None:
        self.blocks = [b for b in ALL_BLOCKS if b.path == path]
        self.workdir = workdir
        shutil.copytree(ROOT / "examples", workdir / "examples")
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.outcome: dict[int, BaseException | None] = {}

    def run_through(self, block: Block) -> None:
        for b in self.blocks:
            if b.line not in self.outcome:
                try:
                    self._run(b)
                    self.outcome[b.line] = None
                except BLOCK_OUTCOMES as exc:  # kept, raised when its block is asked for
                    self.outcome[b.line] = exc
            if b.line == block.line:
                break
        exc = self.outcome[block.line]
        if exc is not None:
            raise exc

    def _run(self, block: Block) -> None:
        reason = skip_reason(block)
        if reason is not None:
            pytest.skip(reason)
        if block.lang in NOT_RUN:
            pytest.skip("not code (no fence language or 'text')")
        code = prepared(block)
        if block.lang == "toml":
            self._check_toml(block, code)
        elif block.lang == "cpp":
            self._check_excerpt(block, code)
        elif block.lang in RUN_PYTHON:
            self._run_python(block, code)
        else:
            self._run_shell(block, code)

    def _source_of(self, block: Block) -> str | None:
        """The file a block is introduced as an excerpt of (``[path](path):``), if any."""
        lines = block.path.read_text(encoding="utf-8").splitlines()[:block.line - 1]
        intro = next((ln for ln in reversed(lines) if ln.strip()), "")
        m = re.search(r"\]\(([^)]+)\):\s*$", intro)
        return None if m is None else m[1]

    def _check_excerpt(self, block: Block, code: str) -> None:
        source = self._source_of(block)
        assert source is not None, f"{block.id}: a cpp block must follow '[path](path):'"
        path = (block.path.parent / source) if not (ROOT / source).exists() else ROOT / source
        have = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        at = 0
        for line in (ln.strip() for ln in code.splitlines()):
            if not line or line == "// ...":
                continue
            try:
                at = have.index(line, at) + 1
            except ValueError:
                pytest.fail(f"{block.id}: {line!r} is not in {source} (after the lines "
                            f"before it)")

    def _check_toml(self, block: Block, code: str) -> None:
        tomllib = pytest.importorskip("tomllib")
        data = tomllib.loads(code)
        lines = block.path.read_text(encoding="utf-8").splitlines()[:block.line - 1]
        intro = next((ln for ln in reversed(lines) if ln.strip()), "")
        m = re.search(r"\]\(([^)]+)\):\s*$", intro)
        if m is not None:  # an excerpt of that file: every key with the file's value
            shown = tomllib.loads((ROOT / m[1]).read_text(encoding="utf-8"))
            for section, values in data.items():
                part = shown.get(section)
                if isinstance(values, dict) and isinstance(part, dict):
                    wrong = {k: v for k, v in values.items() if part.get(k, ...) != v}
                else:
                    wrong = {} if values == part else {section: values}
                assert not wrong, f"{block.id} differs from {m[1]} in [{section}]: {wrong}"

    def _run_python(self, block: Block, code: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if "dask" in code:
            pytest.importorskip("dask.distributed")
        cwd = os.getcwd()
        os.chdir(self.workdir)
        try:
            exec(compile(code, block.id, "exec"), self.namespace)  # noqa: S102 - the docs' code
        except Exception:  # noqa: BLE001 - any error of the doc's code fails its block
            buf = io.StringIO()
            traceback.print_exc(file=buf)
            pytest.fail(f"{block.id} raised:\n{buf.getvalue()}\n--- code run:\n{code}")
        finally:
            os.chdir(cwd)
            plt.close("all")

    def _run_shell(self, block: Block, code: str) -> None:
        env = {**os.environ, "MPLBACKEND": "Agg",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                        os.environ.get("PATH", "")])}
        ran = 0
        for cmd in shell_commands(code, console=block.lang == "console"):
            if cmd.startswith("pip install"):
                continue  # an installation step
            assert cmd.startswith(("linvae ", "python examples/")), (
                f"{block.id}: {cmd!r} is neither a linvae command nor an example; mark "
                f"the block 'text' if it is not meant to be run")
            out = subprocess.run(cmd, shell=True, cwd=self.workdir, env=env, text=True,
                                 capture_output=True, timeout=300)
            assert out.returncode == 0, (f"{block.id}: {cmd!r} exited with "
                                         f"{out.returncode}:\n{out.stderr[-3000:]}")
            ran += 1
        if ran == 0:
            pytest.skip("installation steps only (see test_readme_set_up_commands)")


@pytest.fixture(scope="module")
def file_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, FileRun]:
    return {path: FileRun(path, tmp_path_factory.mktemp(path.stem)) for path in DOCS}


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_doc_block_runs(block: Block, file_runs: dict[Path, FileRun]) -> None:
    file_runs[block.path].run_through(block)


# -- the rules themselves ---------------------------------------------------------------


def test_every_block_has_a_known_language() -> None:
    unknown = [f"{b.id} ```{b.lang}" for b in ALL_BLOCKS if b.lang not in LANGUAGES]
    assert not unknown, f"fence languages must be one of {LANGUAGES}: {unknown}"


def test_readme_set_up_commands() -> None:
    # the section "Set up" holds exactly the two set-up commands, each a block of its own
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Set up") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("## ")) + 1
    in_setup = [b for b in ALL_BLOCKS if b.path.name == "README.md" and start < b.line < end]
    assert [(b.lang, b.code.strip()) for b in in_setup] == [("bash", c) for c in SETUP]


def test_markers_apply_to_the_next_block() -> None:
    # a marker separated from its block by text would be ignored: forbid it
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if MARKER.match(line):
                # "-->" ends an HTML comment: inside a marker it would show the rest
                assert line.count("-->") == 1, f"{path.name}:{i + 1}: '-->' inside a marker"
                nxt = next(ln for ln in lines[i + 1:] if not MARKER.match(ln))
                assert FENCE.match(nxt), f"{path.name}:{i + 1}: marker not right before a block"


def test_marker_parsing() -> None:
    assert parse_substitutions("N=10_000 -> N=500, t_max=10.0 -> t_max=1.0") == [
        ("N=10_000", "N=500"), ("t_max=10.0", "t_max=1.0")]
    assert parse_substitutions("`Ns=[1_000, 4_000]` -> `Ns=[200, 400]`, x -> ") == [
        ("Ns=[1_000, 4_000]", "Ns=[200, 400]"), ("x", "")]
    block = Block(ROOT / "README.md", 1, "python", "a = 1\n", ["a = 2 -> a = 3"])
    with pytest.raises(AssertionError, match="not in the block"):
        prepared(block)
    block.markers = ["skip (needs a SLURM cluster)"]
    assert skip_reason(block) == "needs a SLURM cluster"
    block.markers = ["skip (too slow)"]
    with pytest.raises(AssertionError, match="may be skipped only if"):
        skip_reason(block)
    assert shell_commands("# c\nlinvae info   # v\n\nlinvae a \\\n  --b 1\n") == [
        "linvae info   # v", "linvae a    --b 1"]
    assert shell_commands("$ linvae info\nlinvae 0.1.0\n", console=True) == ["linvae info"]


def test_a_cpp_excerpt_must_be_in_the_file_it_quotes(tmp_path: Path) -> None:
    # the check has power: a line that is not in the quoted file, or lines out of order,
    # or a block without its '[path](path):' fail
    page = tmp_path / "page.md"
    run = FileRun.__new__(FileRun)
    intro = "In [cpp/linvae/model.hpp](cpp/linvae/model.hpp):\n\n"
    good = "```cpp\nX(eta, 1.0)               \\\n// ...\nX(tau_D, 0.5)\n```\n"
    for text, ok in ((intro + good, True),
                     (intro + "```cpp\nX(tau_D, 0.5)\nX(eta, 1.0)               \\\n```\n", False),
                     (intro + "```cpp\nX(kappa, 1.0)\n```\n", False),
                     ("Not an excerpt:\n\n" + good, False)):
        page.write_text(text)
        block = parse_blocks(page)[0]
        try:
            run._check_excerpt(block, block.code)
            passed = True
        except (AssertionError, pytest.fail.Exception):
            passed = False
        assert passed == ok, text
