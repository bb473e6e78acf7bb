"""A SELECT compiled once per dialect and run on the driver's own cursor (sync or async).

SQLAlchemy's ``Connection.execute`` costs about 100 µs a call in its execution machinery
(connection wrapper, execution context, result object) before the database does anything.
For the one read on the gateways' hot path that is most of the work, so this runs the
statement that SQLAlchemy compiled, converting values with the column types' own bind and
result processors (``dialect_impl(...).bind_processor`` / ``result_processor``). What the
database sees, and what comes back, is exactly what ``execute`` would give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


class Prepared:
    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._order: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        self._binds: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        # literals of the statement (``state = 'active'``), bound once
        self._fixed = {
            name: process(bind.value) if (process := self._binds[name]) else bind.value
            for name, bind in compiled.binds.items()
            if not bind.required
        }
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        self._results = tuple((i, p) for i, p in enumerate(processors) if p is not None)

    def bind(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: a list (positional styles) or a dict (named ones)."""
        bound = dict(self._fixed)
        for name, value in params.items():
            process = self._binds[name]
            bound[name] = process(value) if process else value
        return [bound[name] for name in self._order] if self._order is not None else bound

    def convert(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Rows as ``Connection.execute`` would give their values."""
        converted = []
        for row in fetched:
            values = list(row)
            for index, process in self._results:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted

    def rows(self, dbapi_connection: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run on a DBAPI connection (inside its current transaction, if any)."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self.sql, self.bind(params))
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        return self.convert(fetched)
