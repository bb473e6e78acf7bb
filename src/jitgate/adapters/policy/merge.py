"""Merging the documents of a policy folder into one (SPEC §2, GitOps).

Invariants:
- files are merged in the order given (the loader sorts them by name);
- mapping sections merge key by key (``roles``, ``resources``, ``purposes``,
  ``backends``, ``settings``, and ``users``/``teams``/``oncall`` of
  ``directory``, ``channels``/``routes`` of ``notifications``); one key in two
  files is a problem naming both files, and the first definition is kept;
- ``approval`` lists concatenate, and each entry keeps the location of the file
  it came from under its new, merged index;
- ``version`` must agree wherever it is written (``1`` and ``1.0`` do not);
- every location of the merged document points into the file that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitgate.adapters.policy.lines import Document
from jitgate.adapters.policy.problems import Path, PolicyProblem, locate, render_path

# How many mapping levels below a top-level key merge key by key.
_DEPTH = {
    "roles": 1,
    "resources": 1,
    "purposes": 1,
    "backends": 1,
    "settings": 1,
    "directory": 2,
    "notifications": 2,
}


def merge_documents(docs: Sequence[tuple[str, Document]]) -> tuple[Document, list[PolicyProblem]]:
    """Merge ``(file, document)`` pairs; documents must have a mapping (or nothing) on top."""
    merged = Document({}, {})
    problems: list[PolicyProblem] = []
    for file, doc in docs:
        top = doc.data if isinstance(doc.data, dict) else {}
        shift = len(merged.data.get("approval") or [])
        for key, value in top.items():
            _merge_top(merged, doc, file, key, value, problems)
        for path, loc in doc.locs.items():
            merged.locs.setdefault(_renumber(path, shift), loc)
        for path, text in doc.written.items():
            merged.written.setdefault(_renumber(path, shift), text)
    return merged, problems


def _renumber(path: Path, shift: int) -> Path:
    if len(path) >= 2 and path[0] == "approval" and isinstance(path[1], int):
        return ("approval", path[1] + shift, *path[2:])
    return path


def _merge_top(
    merged: Document, doc: Document, file: str, key: str, value: Any, out: list[PolicyProblem]
) -> None:
    data: dict[str, Any] = merged.data
    if key == "approval" and isinstance(value, list):
        earlier = data.get("approval")
        if isinstance(earlier, list) or earlier is None:
            data["approval"] = [*(earlier or []), *value]
            return
    if key == "version" and key in data:
        if data[key] != value or type(data[key]) is not type(value):  # 1 and 1.0 disagree
            out.append(_clash(merged, doc, file, (key,), "files disagree on version"))
        return
    _merge_key(merged, doc, file, data, (key,), value, _DEPTH.get(key, 0), out)


def _merge_key(
    merged: Document,
    doc: Document,
    file: str,
    target: dict[str, Any],
    path: Path,
    value: Any,
    depth: int,
    out: list[PolicyProblem],
) -> None:
    key = str(path[-1])
    if key not in target or target[key] is None:
        target[key] = value
        return
    if value is None:
        return
    earlier = target[key]
    if depth > 0 and isinstance(earlier, dict) and isinstance(value, dict):
        combined = dict(earlier)
        target[key] = combined
        for inner, inner_value in value.items():
            where = (*path, inner)
            _merge_key(merged, doc, file, combined, where, inner_value, depth - 1, out)
        return
    out.append(_clash(merged, doc, file, path, f"{render_path(path)!r} is defined twice"))


def _clash(merged: Document, doc: Document, file: str, path: Path, what: str) -> PolicyProblem:
    first = locate(merged.locs, path, "?")
    here = locate(doc.locs, path, file)
    message = f"{what}: in {first.file}:{first.line} and in {here.file}:{here.line}"
    return PolicyProblem(here.file, here.line, render_path(path), message)
