"""The repository stands on its own: no file of it names a document that is not part of it.

A user has the code, the tests and docs/ — nothing else. The theory a reader needs (formulas,
signs, error orders, pitfalls) lives in docs/ (docs/theory.md and one page per learner) and is
cited by paper; a reference to a specification file kept outside the repository, or to a folder
beside it, points at something the user never has.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", "site", "outputs", "multirun", "runs", "data_cache", "build", "dist", ".venv",
             "__pycache__", ".pytest_cache"}

# Built from pieces so that this file does not match itself.
_MD = r"\.md\b"
OUTSIDE = re.compile(
    "|".join([
        r"\bALGORITHMS(?:-\d+)?" + _MD,
        r"\bALGORITHMS-\d+\b",
        r"\bDESIGN" + _MD,
        r"\bSTYLE" + _MD,
        r"\bpapers" + _MD,
        r"\.\./" + "shared" + r"\b",
        r"/work/" + "shared" + r"\b",
    ])
)


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), or a walk of the tree without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        files = [ROOT / name for name in out.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in ROOT.rglob("*") if p.is_file()]
    return [p for p in files if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary (images, checkpoints): cannot cite anything


def test_the_pattern_catches_each_outside_name():
    # The check cannot pass by matching nothing: every form of reference seen in the past is caught.
    for cited in ["see ALGORITHMS" + ".md §2", "ALGORITHMS" + "-2 §3", "DESIGN" + ".md part 2",
                  "STYLE" + ".md", "papers" + ".md", "../" + "shared/x", "/work/" + "shared/y"]:
        assert OUTSIDE.search(cited), cited
    assert not OUTSIDE.search("docs/theory.md, docs/design_notes.md, shared_state")


def test_no_file_names_a_file_outside_the_repository():
    files = repository_files()
    assert any(p.name == "theory.md" for p in files) and any(p.suffix == ".py" for p in files)
    hits = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, (
        "These lines name a document outside the repository; cite the paper and the docs page "
        "(docs/theory.md or the learner's page) instead:\n" + "\n".join(hits)
    )


def test_the_readme_links_resolve():
    # The README is read on the repository page, outside the docs site (whose strict build checks
    # the links of docs/): each relative link must name a file of the repository.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert relative, "the README links to its docs pages"
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
