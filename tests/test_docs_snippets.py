"""Every ```python block of docs/*.md and README.md runs as written.

The blocks of one page share one namespace and run in page order, as a reader pastes them into
one session. Each page starts as a fresh user session would: float32 default dtype, seed 0, one
thread, the working directory a temporary folder (so a snippet that writes files writes there).
Nothing is skipped: a page with a block that fails fails here, with the block's first line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, source) of each fenced ```python block of a Markdown page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def test_the_collector_finds_the_pages_with_code():
    # A collector that found nothing would make every page pass: the getting-started page and the
    # README have blocks today, and the fence pattern must see them.
    names = {p.name for p in PAGES_WITH_CODE}
    assert {"getting_started.md", "README.md", "write_your_own_energy.md"} <= names, names
    assert len(python_blocks(ROOT / "docs" / "getting_started.md")) >= 2


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float32)          # what a user's session starts with
    torch.set_num_threads(1)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for line, source in python_blocks(page):
            code = compile(source, f"{page.relative_to(ROOT)}:{line}", "exec")
            try:
                exec(code, namespace)
            except Exception as exc:  # name the block, keep the traceback
                raise AssertionError(
                    f"{page.relative_to(ROOT)}, block at line {line} ({source.splitlines()[0]!r}) "
                    f"raised {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
