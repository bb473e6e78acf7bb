"""YAML text -> plain Python data plus the line of every key and list item.

Invariants:
- only the YAML safe subset is read (``yaml.SafeLoader``): no Python objects,
  unknown tags are problems, never constructed;
- every mapping key and every list item has an entry in ``Document.locs``
  (its path -> file and 1-based line), so later checks can point at it;
- mapping keys are the text written in the file (``yes`` stays ``"yes"``); a number
  written otherwise than YAML reads it (``1:30:00`` is 5400) keeps its text in
  ``Document.written``, for messages;
- a key written twice in one mapping is a problem (``<<`` merge keys may be
  overridden, as YAML intends); aliases are expanded, recursion is refused and
  the expansion is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jitgate.adapters.policy.problems import Location, Path, PolicyProblem, render_path

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIME_TAG = "tag:yaml.org,2002:timestamp"
_NODE_BUDGET = 200_000


@dataclass
class Document:
    """One parsed policy file (or several merged): data and where each path was written."""

    data: Any
    locs: dict[Path, Location] = field(default_factory=dict)
    # the text of each scalar YAML reads as a number it does not spell: ``1:30:00`` (5400)
    written: dict[Path, str] = field(default_factory=dict)


def parse_document(text: str, file: str) -> tuple[Document, list[PolicyProblem]]:
    """Parse ``text``; a syntax error yields one problem at the line YAML reports."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return Document(None, {(): Location(file, 1)}), []
        converter = _Converter(loader, file)
        data = converter.convert(root, ())
        converter.locs.setdefault((), Location(file, _line(root)))
        return Document(data, converter.locs, converter.written), converter.problems
    except yaml.MarkedYAMLError as exc:
        return Document(None), [_syntax_problem(exc, file)]
    except yaml.YAMLError as exc:
        line = text[: getattr(exc, "position", 0)].count("\n") + 1
        return Document(None), [PolicyProblem(file, line, "", f"not readable as YAML: {exc}")]
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    parts = [p for p in (exc.context, exc.problem) if p]
    detail = ", ".join(parts) if parts else "invalid YAML"
    return PolicyProblem(file, line, "", f"YAML syntax error: {detail}")


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Converter:
    """Walks composed nodes once, recording locations and problems."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.locs: dict[Path, Location] = {}
        self.problems: list[PolicyProblem] = []
        self.written: dict[Path, str] = {}
        self._active: set[int] = set()
        self._budget = _NODE_BUDGET

    def problem(self, node: Node, path: Path, message: str) -> None:
        self.problems.append(PolicyProblem(self.file, _line(node), render_path(path), message))

    def convert(self, node: Node, path: Path) -> Any:
        self._budget -= 1
        if self._budget < 0:
            if self._budget == -1:
                self.problem(node, path, "document too large (alias expansion?)")
            return None
        if id(node) in self._active:
            self.problem(node, path, "recursive alias")
            return None
        self._active.add(id(node))
        try:
            return self._dispatch(node, path)
        finally:
            self._active.discard(id(node))

    def _dispatch(self, node: Node, path: Path) -> Any:
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                self.problem(node, path, f"unsupported YAML tag {node.tag}")
                return None
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(node, path, f"unsupported YAML tag {node.tag}")
                return None
            return self._sequence(node, path)
        return self._scalar(node, path)

    def _scalar(self, node: Node, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and str(node.value) != str(value):
                self.written[path] = str(node.value)
            return value
        except yaml.MarkedYAMLError as exc:
            self.problem(node, path, exc.problem or "value cannot be read")
            return None
        except (ValueError, OverflowError) as exc:
            if node.tag == _TIME_TAG:  # 2026-02-30T09:00:00Z looks like one: its reader says why
                return str(node.value)
            self.problem(node, path, f"{node.value} cannot be read ({exc})")
            return None

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(node.value):
            self.locs.setdefault((*path, index), Location(self.file, _line(item)))
            out.append(self.convert(item, (*path, index)))
        return out

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            where = (*path, key)
            if key in out:
                first = self.locs.get(where)
                at = f" (first at line {first.line})" if first else ""
                self.problem(key_node, where, f"duplicate key {key!r}{at}")
                continue
            self.locs.setdefault(where, Location(self.file, _line(key_node)))
            out[key] = self.convert(value_node, where)
        for source in merged:
            self._merge(source, path, out)
        return out

    def _key(self, key_node: Node, path: Path) -> str | None:
        if isinstance(key_node, ScalarNode):
            return str(key_node.value)
        self.problem(key_node, path, "mapping keys must be plain text")
        return None

    def _merge(self, source: Node, path: Path, out: dict[str, Any]) -> None:
        """``<<: *anchor``: copy keys that ``out`` does not define itself."""
        sources = source.value if isinstance(source, SequenceNode) else [source]
        for item in sources:
            value = self.convert(item, path)
            if not isinstance(value, dict):
                self.problem(item, path, "'<<' must refer to a mapping")
                continue
            for key, inner in value.items():
                out.setdefault(key, inner)
