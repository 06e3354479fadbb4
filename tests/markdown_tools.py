"""Reading the docs' markdown in tests: tables, headings, links, and the numbers a result JSON holds."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def table_rows(markdown: str) -> list[list[str]]:
    """Every row of every table in ``markdown`` (separator rows left out), as stripped cells."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def anchors(path: Path) -> set[str]:
    """The #anchors GitHub makes of a markdown file's headings."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip()).lower().replace(" ", "-")
            for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def broken_links(doc: Path, inside: Path | None = None) -> list[str]:
    """The relative links of ``doc`` that name no file (or, with ``inside``, a file outside that folder) or
    no heading of it."""
    problems = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists() or (inside is not None and inside not in resolved.parents):
            problems.append(f"{target}: no such file" + (" in the repository" if inside else ""))
        elif anchor and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading for #{anchor}")
    return problems


def json_numbers(*results) -> list[float]:
    """Every number in ``results`` (nested dicts and lists; booleans are not numbers): what a doc may quote."""
    out: list[float] = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out.append(x)

    for r in results:
        walk(r)
    return out
