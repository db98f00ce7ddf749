"""Checks on the repository itself: self-contained docs, valid model-page links, license.

The first two tests read the files tracked by git, so they are skipped where git or the
``.git`` folder is missing (an unpacked sdist, for example).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_PAGE = ROOT / "docs" / "model.md"

# Names of documents outside this repository that no file may point to. Built by
# concatenation so that this file does not contain them itself.
FOREIGN = ("MODEL" + ".md", ".." + "/shared")

# An explicit anchor on the model page, and a link to one from anywhere.
ANCHOR = re.compile(r'<a\s+id="([^"]+)"\s*>\s*</a>')
LINK = re.compile(r"(?<![\w.-])(?:docs/)?model\.md#([A-Za-z0-9_-]+)")
LOCAL_LINK = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")


@cache
def tracked_files() -> tuple[Path, ...]:
    """The files tracked by git that exist in the working tree (skip if git is absent)."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout (no .git), e.g. an unpacked sdist")
    try:
        out = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"git ls-files failed: {exc}")
    paths = (ROOT / p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)
    return tuple(p for p in paths if p.is_file())


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary (non-UTF-8) file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def model_anchors() -> set[str]:
    assert MODEL_PAGE.is_file(), "docs/model.md is missing"
    return set(ANCHOR.findall(MODEL_PAGE.read_text(encoding="utf-8")))


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = tracked_files()
    assert files, "git ls-files listed no files"
    needles = [s.encode() for s in FOREIGN]
    offending = []
    for path in files:
        data = path.read_bytes()
        for needle, name in zip(needles, FOREIGN, strict=True):
            if needle in data:
                lines = [i + 1 for i, line in enumerate(data.splitlines()) if needle in line]
                offending.append(f"{path.relative_to(ROOT)}:{lines} contains {name!r}")
    assert not offending, ("files refer to documents outside the repository (point to "
                           "docs/model.md instead):\n" + "\n".join(offending))


def test_model_page_has_the_section_anchors() -> None:
    expected = {"data", "model", "sgd", "order-parameters", "odes", "findings",
                "initial-states", "pitfalls"}
    missing = expected - model_anchors()
    assert not missing, f"docs/model.md lacks the anchors {sorted(missing)}"


def test_model_page_links_point_to_existing_anchors() -> None:
    anchors = model_anchors()
    files = tracked_files()
    broken = []
    n_links = 0
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            for name in LINK.findall(line):
                n_links += 1
                if name not in anchors:
                    broken.append(f"{path.relative_to(ROOT)}:{lineno}: model.md#{name}")
    # links within the page itself, e.g. [section 5](#odes); the page may not be tracked yet
    for lineno, line in enumerate(MODEL_PAGE.read_text(encoding="utf-8").splitlines(), 1):
        for name in LOCAL_LINK.findall(line):
            if name not in anchors:
                broken.append(f"docs/model.md:{lineno}: #{name}")
    assert n_links > 0, "no file links to docs/model.md#<anchor>; is the pattern stale?"
    assert not broken, (f"links to anchors that docs/model.md does not define (it has "
                        f"{sorted(anchors)}):\n" + "\n".join(broken))


def test_license_file_is_declared_in_the_package_metadata() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    license_file = ROOT / "LICENSE"
    assert license_file.is_file(), "LICENSE is missing"
    assert "MIT License" in license_file.read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project.get("license") == "MIT", "project.license should be the SPDX id 'MIT'"
    assert "LICENSE" in project.get("license-files", []), \
        "project.license-files must include LICENSE so that the wheel carries it"
    # PEP 639: a license expression must not be combined with License :: classifiers
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
