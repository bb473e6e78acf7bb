"""Loading a policy: file or folder -> validated, immutable ``Policy``.

Invariants:
- nothing happens at import time; a load reads only the given file(s) and, when the
  policy has channels or backends, the installed plugins (entry points); never the
  environment (``*_env`` keys are names, resolved later by plugins);
- a load returns a ``Policy`` only when there is no problem at all; otherwise it
  raises ``PolicyError`` listing every problem, in file and line order;
- ``Policy.digest`` is the sha256 of the raw bytes read (files concatenated in
  name order for a folder);
- a folder means its ``*.yaml``/``*.yml`` files (not hidden, not recursive); a subfolder
  holding policy files is a warning that names it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, TypeVar

from jitgate.adapters.policy.approval import read_approval
from jitgate.adapters.policy.checks import Checker
from jitgate.adapters.policy.directory import read_directory
from jitgate.adapters.policy.lines import Document, parse_document
from jitgate.adapters.policy.lint import notice
from jitgate.adapters.policy.merge import merge_documents
from jitgate.adapters.policy.plugins import PluginCatalog, read_backends, read_notifications
from jitgate.adapters.policy.problems import PolicyError, PolicyProblem, sort_problems
from jitgate.adapters.policy.sections import (
    read_purposes,
    read_resources,
    read_roles,
    read_settings,
)
from jitgate.domain.policy import Policy

SUPPORTED_VERSION = 1
TOP_KEYS = (
    "version",
    "settings",
    "directory",
    "resources",
    "roles",
    "purposes",
    "approval",
    "notifications",
    "backends",
)
_SUFFIXES = (".yaml", ".yml")
T = TypeVar("T")
log = logging.getLogger("jitgate.policy")


@dataclass(frozen=True)
class CheckedPolicy:
    """A policy that loaded, and the warnings about it (``adapters.policy.lint``)."""

    policy: Policy
    warnings: list[PolicyProblem]


def load_policy(path: str | os.PathLike[str], *, plugins: PluginCatalog | None = None) -> Policy:
    """Load a policy file, or a folder of ``*.yaml``/``*.yml`` files merged by name order.

    ``plugins`` replaces the installed channel and backend plugins (tests, tools).
    """
    return check_policy(path, plugins=plugins).policy


def check_policy(
    path: str | os.PathLike[str], *, plugins: PluginCatalog | None = None
) -> CheckedPolicy:
    """``load_policy``, with the warnings about the policy it loaded."""
    given = str(path)
    target = FsPath(path)
    if target.is_dir():
        files = sorted(
            (p for p in target.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
        skipped = _skipped_folders(target)
        if not files:
            names = ", ".join(p.file for p in skipped)
            unread = f" (subfolders are not read: {names})" if skipped else ""
            message = f"folder has no *.yaml or *.yml file{unread}"
            raise PolicyError([PolicyProblem(given, 1, "", message)])
        sources = [(str(p), _read(p, str(p))) for p in files]
        checked = _build(sources, plugins)
        return CheckedPolicy(checked.policy, sort_problems([*checked.warnings, *skipped]))
    return _build([(given, _read(target, given))], plugins)


def load_policy_text(
    text: str, filename: str = "<policy>", *, plugins: PluginCatalog | None = None
) -> Policy:
    """Load a policy from a string (tests, tools)."""
    return check_policy_text(text, filename, plugins=plugins).policy


def check_policy_text(
    text: str, filename: str = "<policy>", *, plugins: PluginCatalog | None = None
) -> CheckedPolicy:
    """``check_policy`` of a string (``policy check -``: a policy on standard input)."""
    return _build([(filename, text.encode("utf-8"))], plugins)


def guarded(load: Callable[[], T], source: str) -> T:
    """``load()``, whose every failure is a ``PolicyError`` (a reload keeps the last good
    policy): an unexpected exception, a bug, is logged as one error line, with its
    traceback at debug level, and becomes one problem naming only its type."""
    try:
        return load()
    except PolicyError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        log.error("policy %s could not be loaded: unexpected %s: %s", source, kind, exc)
        log.debug("the traceback of that %s (a bug in jitgate)", kind, exc_info=True)
        message = f"the policy could not be loaded: unexpected {kind} (see the server log)"
        raise PolicyError([PolicyProblem(source, 1, "", message)]) from exc


def _skipped_folders(folder: FsPath) -> list[PolicyProblem]:
    """A warning for each subfolder (not hidden) holding policy files: a folder is read
    non-recursively, so what they define is not in the policy."""
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _holds_yaml(sub):
            message = (
                "this subfolder is not read (a policy folder is read non-recursively, only "
                "its own *.yaml/*.yml files): move its files up a level to use them"
            )
            found.append(PolicyProblem(str(sub), 1, "", message))
    return found


def _holds_yaml(folder: FsPath) -> bool:
    for _root, dirs, names in os.walk(folder, onerror=None):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(FsPath(n).suffix in _SUFFIXES and not n.startswith(".") for n in names):
            return True
    return False


def _read(path: FsPath, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PolicyError([PolicyProblem(name, 1, "", f"cannot read policy: {reason}")]) from None


def _build(sources: list[tuple[str, bytes]], plugins: PluginCatalog | None) -> CheckedPolicy:
    problems: list[PolicyProblem] = []
    docs: list[tuple[str, Document]] = []
    unreadable = False
    for name, raw in sources:
        doc, found = _parse(name, raw)
        problems.extend(found)
        docs.append((name, doc))
        unreadable = unreadable or (bool(found) and not isinstance(doc.data, dict))
    if unreadable:  # checking the rest would only add noise ("version is required"...)
        raise PolicyError(sort_problems(problems))
    merged = docs[0][1]
    if len(docs) > 1:
        merged, clashes = merge_documents(docs)
        problems.extend(clashes)
    check = Checker(merged.locs, sources[0][0], merged.written)
    check.problems.extend(problems)
    digest = hashlib.sha256(b"".join(raw for _, raw in sources)).hexdigest()
    policy = _validate(check, merged.data or {}, digest, plugins or PluginCatalog())
    if check.problems:
        raise PolicyError(sort_problems(check.problems))
    notice(check, merged.data or {}, policy)
    return CheckedPolicy(policy, sort_problems(check.warnings))


def _parse(name: str, raw: bytes) -> tuple[Document, list[PolicyProblem]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return Document(None), [PolicyProblem(name, line, "", "file is not UTF-8 text")]
    doc, problems = parse_document(text, name)
    if not problems and doc.data is not None and not isinstance(doc.data, dict):
        found = type(doc.data).__name__
        line = doc.locs[()].line if () in doc.locs else 1
        message = f"the top level must be a mapping (version, settings, roles, …), not a {found}"
        problems = [PolicyProblem(name, line, "", message)]
    return doc, problems


def _validate(check: Checker, data: dict[str, Any], digest: str, plugins: PluginCatalog) -> Policy:
    check.mapping(data, (), TOP_KEYS)
    _version(check, data)
    backends = read_backends(check, data.get("backends"), plugins)
    directory = read_directory(check, data.get("directory"))
    # a name written in its section counts as defined even when its entry has a problem:
    # that problem is reported once, not again at every place that names it
    schedules = {*directory.oncall, *_written(data, "directory", "oncall")}
    return Policy(
        settings=read_settings(check, data.get("settings")),
        directory=directory,
        resources=read_resources(check, data.get("resources")),
        roles=read_roles(check, data.get("roles"), {*backends, *_written(data, "backends")}),
        purposes=read_purposes(check, data.get("purposes")),
        approval=read_approval(check, data.get("approval"), schedules),
        notifications=read_notifications(check, data.get("notifications"), plugins),
        backends=backends,
        digest=digest,
    )


def _written(data: dict[str, Any], *path: str) -> set[str]:
    """The names written as keys of the mapping at ``path`` (none if it is not one)."""
    found: Any = data
    for key in path:
        found = found.get(key) if isinstance(found, dict) else None
    if not isinstance(found, dict):
        return set()
    return {key.strip() for key in found if isinstance(key, str)}


def _version(check: Checker, data: dict[str, Any]) -> None:
    if "version" not in data:
        check.error(("version",), f"'version: {SUPPORTED_VERSION}' is required")
        return
    value = data["version"]
    if type(value) is not int or value != SUPPORTED_VERSION:  # not True, not 1.0, not "1"
        check.error(
            ("version",),
            f"unsupported version {value!r}; this jitgate reads version 1 (the integer 1)",
        )
