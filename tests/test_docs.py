"""The documentation: the site builds with warnings as errors, and the user-facing text stays a front door.

- `mkdocs build --strict` (mkdocs.yml) renders the guide, the design, the results and the API reference from
  the docstrings (mkdocstrings); a broken link, a page missing from the nav or a docstring griffe cannot
  parse fails the build. It takes about 10 s on 2 CPU cores.
- README.md stays at most 300 lines, and its relative links point at files that exist.
- No user-facing page (README.md, CHANGELOG.md, docs/**/*.md) cites how the work was organised: no commit
  hashes (7 to 40 hex digits with at least one letter and one digit) and no "session", in the pages
  and in the API reference rendered from the docstrings.
"""

import html
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
# A commit hash, short or full: 7-40 hex digits holding both a digit and a letter, so that plain numbers
# (1234567) and words (defaced) do not match.
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
SESSION = re.compile(r"\bsessions?\b", re.IGNORECASE)


def user_facing_pages():
    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [p for p in pages if p.exists()]


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") for t in local), "README.md links no docs/ page"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


@pytest.mark.parametrize("page", user_facing_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_work_history_in_user_text(page):
    text = page.read_text()
    hashes = HASH.findall(text)
    assert not hashes, f"{page.relative_to(REPO)}: commit hashes {hashes[:5]}; name the command instead"
    sessions = [text[max(m.start() - 30, 0):m.end() + 30] for m in SESSION.finditer(text)]
    assert not sessions, f"{page.relative_to(REPO)}: mentions a session: {sessions[:3]}"


def test_hash_pattern():
    # The checks above could fail: the pattern finds short and full hashes and leaves numbers and words alone.
    assert HASH.findall("at commit 87ca285, then 1989f3a04c1d9e2b7a6f0e8d5c4b3a2918273645") == [
        "87ca285", "1989f3a04c1d9e2b7a6f0e8d5c4b3a2918273645"]
    assert HASH.findall("45730 rows, 1234567 entries, a defaced cafe, dim 16384") == []
    assert SESSION.search("the sixth Session") and not SESSION.search("possession")


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[dev]' includes it) builds the docs")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra installs mkdocstrings[python]")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    # The API reference was generated from the docstrings, not left as `::: module` text.
    api = (site / "api" / "sketches" / "index.html").read_text()
    assert "tensor_srht" in api and ":::" not in api
    assert (site / "changelog" / "index.html").read_text().count("Unreleased") >= 1
    # The API pages are user text too: the docstrings they render cite no commit or session.
    for page in sorted((site / "api").rglob("index.html")):
        text = html.unescape(re.sub(r"<[^>]+>", " ", page.read_text()))
        found = HASH.findall(text) + SESSION.findall(text)
        assert not found, f"{page.relative_to(site)} renders {found[:5]} from a docstring"
