"""Every screenshot the guides show is one the browser tests take, so none of them can go stale.

`mkdocs build --strict` already fails on a screenshot that is missing; this fails on one that is still
committed but that no browser test takes any more (it would show yesterday's UI for ever).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TAKEN = (
    re.compile(r"""shot\(\s*\w+,\s*"([\w-]+)",\s*docs=True\s*\)"""),
    re.compile(r"""docs_screenshot\(\s*\w+,\s*"([\w-]+)"\s*\)"""),
)


def taken_by_browser_tests() -> set[str]:
    sources = "\n".join(path.read_text() for path in (ROOT / "tests" / "browser").glob("*.py"))
    return {name for pattern in TAKEN for name in pattern.findall(sources)}


def shown_in_guides() -> set[str]:
    pages = "\n".join(path.read_text() for path in DOCS.glob("*.md"))
    return set(re.findall(r"\(screenshots/([\w-]+)\.png\)", pages))


def test_every_screenshot_a_guide_shows_is_taken_by_a_browser_test() -> None:
    shown = shown_in_guides()
    assert shown, "the guides show no screenshot"
    assert shown <= taken_by_browser_tests(), sorted(shown - taken_by_browser_tests())


def test_no_committed_screenshot_is_left_behind() -> None:
    committed = {path.stem for path in (DOCS / "screenshots").glob("*.png")}
    assert committed <= taken_by_browser_tests(), sorted(committed - taken_by_browser_tests())
