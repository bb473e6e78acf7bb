"""``problems.is_json``: which Content-Type makes a body JSON. The authorize route and its
fast path use it; FastAPI decides the same for every other route (``email.message``, and
no Content-Type at all is not JSON), so all of them refuse or take the same bodies."""

from __future__ import annotations

import email.message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitgate.entrypoints.api.problems import is_json


def fastapi_reads_as_json(content_type: str | None) -> bool:
    """FastAPI's own test (``fastapi.routing``, with its default ``strict_content_type``)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


TAKEN = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    " application/json ;charset=UTF-8",
    "application/vnd.jitgate+json",
    "application/problem+json",
]
REFUSED = [
    None,
    "",
    " ",
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "application/json/x",
    "application",
    "json",
    "application/ json",
    "application/json foo",
]


@pytest.mark.parametrize("content_type", TAKEN + REFUSED)
def test_is_json_agrees_with_fastapi(content_type: str | None) -> None:
    assert is_json(content_type) is fastapi_reads_as_json(content_type)
    assert is_json(content_type) is (content_type in TAKEN)


PARTS = st.tuples(
    st.sampled_from(["application", "Application", " application", "text", "", "app lication"]),
    st.sampled_from(["/", "", "//", " /"]),
    st.sampled_from(["json", "JSON", "x+json", "+json", "json ", "jsonx", "json+x", ""]),
    st.sampled_from(["", ";", "; charset=utf-8", " ;x", ";a/b", "\t"]),
).map("".join)


@given(PARTS | st.text(alphabet="aApPjJsSoOnN/+;= \t-.xX", max_size=30))
def test_is_json_agrees_with_fastapi_on_any_header(content_type: str) -> None:
    assert is_json(content_type) is fastapi_reads_as_json(content_type)
