"""Bodies and query values the served API refuses with a 422 problem that says why: a
body Python's JSON reader cannot read (not UTF-8, a number too long, nested too deep; was
a bare 400), a duration in digits of another script, a cursor with something added."""

from __future__ import annotations

import httpx
import pytest

from served import Served

JANE = "jane.doe@example.com"
JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000  # under the 256 KiB limit, past any parser's depth


def assert_problem(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status and response.json()["detail"] == detail


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"roles": ["dev-ssh"], "reason": "caf\xe9"}', "body: the body is not valid UTF-8"),
        (
            b'{"roles": ["dev-ssh"], "reason": ' + b"9" * 5000 + b"}",
            "body: a number in the body is too large",
        ),
        (DEEP, "body: the body nests too deeply"),
    ],
    ids=["latin-1", "5000 digits", "nested 100000 deep"],
)
@pytest.mark.parametrize("path", ["/v1/requests", "/v1/authorize", "/v1/sessions"])
def test_an_unreadable_body_is_a_422_that_says_why(
    served: Served, path: str, content: bytes, detail: str
) -> None:
    """The routes FastAPI reads the body of, and authorize which reads its own: the same."""
    who = JANE if path == "/v1/requests" else "gateway"
    client = served.client(who)
    for _ in range(2):  # authorize: the second call has its token cached (the fast path's)
        answer = client.post(path, content=content, headers=JSON)
        assert_problem(answer, 422, detail)
        assert answer.json()["errors"] == [{"loc": ["body"], "msg": detail.removeprefix("body: ")}]
    assert served.client(JANE).get("/v1/requests").json()["items"] == []


@pytest.mark.parametrize("duration", ["\u0662h", "\U0001d7d0h", "PT\uff12H", "1h\uff130m"])
def test_a_duration_in_digits_of_another_script_is_refused(served: Served, duration: str) -> None:
    jane = served.client(JANE)
    body = {"roles": ["dev-ssh"], "reason": "x", "duration": duration}
    answer = jane.post("/v1/requests", json=body)
    assert answer.status_code == 422, answer.text
    assert "is not a duration" in answer.json()["detail"]
    assert jane.get("/v1/requests").json()["items"] == []


def test_a_cursor_with_anything_added_or_changed_is_refused(served: Served) -> None:
    jane = served.client(JANE)
    for _ in range(3):
        made = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"})
        assert made.status_code == 201, made.text
    first = jane.get("/v1/requests", params={"limit": 1}).json()
    cursor = first["next_cursor"]
    second = jane.get("/v1/requests", params={"limit": 1, "cursor": cursor})
    assert second.status_code == 200 and second.json()["items"] != first["items"]
    for changed in (
        cursor + "!!!",
        cursor + "$junk",
        cursor + "=",
        cursor + "====",
        "." + cursor,
        cursor[:10] + "*" + cursor[10:],
        cursor + " ",
    ):
        answer = jane.get("/v1/requests", params={"limit": 1, "cursor": changed})
        assert_problem(answer, 422, "cursor: not a cursor this server gave")
