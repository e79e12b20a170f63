"""The Dockerfile as data: its instructions, its stages, and what the builder stage copies from the context."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DOCKERFILE", "copied", "instructions", "stages"]

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, its FROM first."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def copied() -> list[str]:
    """The source paths the builder stage copies from the build context."""
    return [
        source
        for keyword, args in stages()[0]
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
