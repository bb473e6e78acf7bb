"""A plugin shipped as its own package: a module and its ``*.dist-info`` on ``sys.path``,
so ``importlib.metadata.entry_points`` finds it as it would an installed one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def installed(root: Path, module: str, source: str, group: str, entry: str) -> Iterator[None]:
    """``module`` (its ``source``) installed under ``root``, declaring ``entry``
    (``name = module:Class``) in the entry point ``group``; removed afterwards."""
    (root / f"{module}.py").write_text(source)
    dist = root / f"{module}-1.0.dist-info"
    dist.mkdir()
    name = module.replace("_", "-")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(module, None)
