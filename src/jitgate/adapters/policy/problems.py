"""Problems found in a policy, and where they are.

Invariants:
- a problem always names a file, a 1-based line and a key path; the line is the
  line of the offending key or item, or of its nearest ancestor that exists;
- messages never contain the value of a secret (they name keys, not values);
- ``PolicyError`` carries every problem found, never only the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


def render_path(path: Path) -> str:
    """``("approval", 2, "all", 0, "oncall")`` -> ``approval[2].all[0].oncall``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


@dataclass(frozen=True)
class Location:
    """Where a key or item was written."""

    file: str
    line: int


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy: ``FILE:LINE: PATH: MESSAGE``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}:{self.line}: {self.path}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


class PolicyError(Exception):
    """A policy that cannot be used; ``problems`` lists all that were found."""

    def __init__(self, problems: Iterable[PolicyProblem]) -> None:
        self.problems: list[PolicyProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def __reduce__(self) -> tuple[type[PolicyError], tuple[list[PolicyProblem]]]:
        return (PolicyError, (self.problems,))


def locate(locs: Mapping[Path, Location], path: Path, fallback: str) -> Location:
    """The location of ``path``, else of its nearest ancestor, else line 1 of ``fallback``."""
    probe = path
    while True:
        found = locs.get(probe)
        if found is not None:
            return found
        if not probe:
            return Location(fallback, 1)
        probe = probe[:-1]


def sort_problems(problems: Iterable[PolicyProblem]) -> list[PolicyProblem]:
    """Problems in reading order: by file, then line (stable for equal positions)."""
    return sorted(problems, key=lambda p: (p.file, p.line))
