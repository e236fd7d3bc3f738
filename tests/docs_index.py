"""Tables of contents of the long Markdown pages: headings, their GitHub anchors, the list."""

from __future__ import annotations

import re

LONG_PAGE_LINES = 150  # a page longer than this carries a table of contents
TOC_TITLE = "## Contents"


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = title.strip().lower().replace("`", "")
    return re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-")


def headings(text: str, depth: int) -> list[tuple[int, str]]:
    """(level, title) of the `##`..`#`*depth headings outside code blocks, the TOC's own excluded."""
    out: list[tuple[int, str]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(#{2,6}) (.+)$", line)
        if match and len(match.group(1)) <= depth and line != TOC_TITLE:
            out.append((len(match.group(1)), match.group(2).strip()))
    return out


def toc(text: str, depth: int = 2) -> str:
    """The `## Contents` section a page should carry (a list of links to its headings)."""
    lines = [TOC_TITLE]
    for level, title in headings(text, depth):
        lines.append(f"{'  ' * (level - 2)}- [{title.replace('`', '')}](#{anchor(title)})")
    return "\n".join(lines) + "\n"


def current_toc(text: str) -> str:
    """The page's `## Contents` section as written ('' when it has none)."""
    if f"\n{TOC_TITLE}\n" not in text:
        return ""
    body = text.split(f"\n{TOC_TITLE}\n", 1)[1].split("\n\n", 1)[0]
    return f"{TOC_TITLE}\n{body.rstrip()}\n"


def rewrite(path: str) -> None:
    """Replace a page's `## Contents` with one that matches its headings (depth kept)."""
    from pathlib import Path

    page = Path(path)
    text = page.read_text()
    written = current_toc(text)
    if not written:
        raise SystemExit(f"{path}: no {TOC_TITLE} section to rewrite (add one first)")
    depth = 3 if any(line.startswith("  - ") for line in written.splitlines()) else 2
    page.write_text(text.replace(written, toc(text, depth), 1))


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        rewrite(name)
