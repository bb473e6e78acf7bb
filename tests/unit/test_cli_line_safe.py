"""What the CLI prints for people (``line_safe``, ``table``), how a user's id goes into a URL
path (``segment``, ``an_id``), and database URLs that cannot work (``connect``)."""

from __future__ import annotations

import click
import pytest

from jitgate.adapters.db.engine import connect
from jitgate.config import ConfigError
from jitgate.entrypoints.cli.client import an_id, segment
from jitgate.entrypoints.cli.common import line_safe, table


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("INC-42 disk full", "INC-42 disk full"),
        ("é 日本 👍 ok", "é 日本 👍 ok"),
        ("a\nb\rc\td", r"a\nb\rc\td"),
        ("\x1b[1A\x1b[2K", r"\x1b[1A\x1b[2K"),
        ("\x00\x7f\x85\x9b", r"\x00\x7f\x85\x9b"),
        ("\u202eevil\u202c", r"\u202eevil\u202c"),
        ("\u200b\u200f\u202a\u2066\u2069", r"\u200b\u200f\u202a\u2066\u2069"),
        ("line\u2028sep\u2029", r"line\u2028sep\u2029"),
        ("tag\U000e0041", r"tag\U000e0041"),
        (42, "42"),
    ],
)
def test_line_safe_escapes_what_a_terminal_would_obey(raw: object, shown: str) -> None:
    assert line_safe(raw) == shown


def test_every_table_cell_is_line_safe() -> None:
    text = table([["r1", "x\n fake row\x1b[2J"]], ["id", "reason"])
    assert text.splitlines()[2] == r"r1  x\n fake row\x1b[2J"
    assert len(text.splitlines()) == 3 and "\x1b" not in text


def test_segment_is_one_path_segment() -> None:
    assert segment("a/../b") == "a%2F..%2Fb"
    assert segment("x?y#z%\x01") == "x%3Fy%23z%25%01"
    assert (segment("."), segment(".."), segment("...")) == ("%2E", "%2E%2E", "...")
    assert segment("0b6e4c0e-8a57-4a6e-9f6a-2f0e4c1b7d21") == "0b6e4c0e-8a57-4a6e-9f6a-2f0e4c1b7d21"


@pytest.mark.parametrize("good", ["0b6e4c0e-8a57-4a6e-9f6a-2f0e4c1b7d21", "r1", " r1 ", "a.b:c"])
def test_an_id_accepts_ids(good: str) -> None:
    assert an_id(click.Context(click.Command("x")), click.Argument(["x"]), good) == good.strip()


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "a b", "a\x01", "-rf", "é", "a" * 201])
def test_an_id_refuses_what_cannot_be_an_id(bad: str) -> None:
    with pytest.raises(click.BadParameter, match="is not an id"):
        an_id(click.Context(click.Command("x")), click.Argument(["x"]), bad)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_sqlite_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"a SQLite URL needs a file path, e\.g\. sqlite:///"):
        connect(url)


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@[::1", "postgresql://u:hunter2@h:x/d"])
def test_a_url_that_does_not_parse_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a database URL") as raised:
        connect(url)
    assert "hunter2" not in str(raised.value)
