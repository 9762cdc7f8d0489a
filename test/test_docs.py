"""The front page and the docs hold together: every docs page is linked from the README, every relative link
and picture in the README and docs points at a file that exists, and the README stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    links = [m.group(1) for m in LINK.finditer(page.read_text())]
    return [link for link in links if not re.match(r"[a-z]+://|#|mailto:", link)]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _relative_links(ROOT / "README.md")}
    missing = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked)
    assert not missing, f"docs pages the README does not link: {missing}"


def test_every_relative_link_points_at_a_file():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in _relative_links(page):
            if not (page.parent / link.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert not broken, broken


def test_the_readme_is_a_front_page_with_the_two_commands_first():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    first_code = lines.index("```bash")
    assert lines[first_code + 1].startswith("make demo") and lines[first_code + 2].startswith("make test")
