"""``/openapi.json`` says what the served API does: the probes take no token and list only
their own answers; every other operation lists the answers it can get besides its own
(400 for a NUL in a URL value, 413 and 415 for a body, 503 with Retry-After while the
database is away), each a problem; 405 is described once, for the whole API."""

from __future__ import annotations

from typing import Any

import pytest

from served import Served

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture
def schema(served: Served) -> dict[str, Any]:
    answer = served.client().get("/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def resolved(schema: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in answer:
        return dict(schema["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]])
    return answer


def test_the_probes_take_no_token_and_list_only_their_answers(
    served: Served, schema: dict[str, Any]
) -> None:
    assert schema["security"] == [{"bearer": []}]
    health, ready = schema["paths"]["/healthz"]["get"], schema["paths"]["/readyz"]["get"]
    assert health["security"] == [] and ready["security"] == []
    assert set(health["responses"]) == {"200"}
    assert set(ready["responses"]) == {"200", "503"}
    assert set(ready["responses"]["503"]["content"]) == {"application/json"}
    bare = served.client()
    assert bare.get("/healthz").status_code == 200 and bare.get("/readyz").status_code == 200


def test_every_other_operation_lists_the_answers_it_can_get(schema: dict[str, Any]) -> None:
    checked = 0
    for path, method, operation in operations(schema):
        if path in ("/healthz", "/readyz"):
            continue
        assert "security" not in operation, (method, path)  # the API's bearer token
        answers = {code: resolved(schema, a) for code, a in operation["responses"].items()}
        expected = {"401", "403", "404", "409", "422", "503"}
        if any(p["in"] in ("path", "query") for p in operation.get("parameters", ())):
            expected.add("400")
        if "requestBody" in operation:
            expected |= {"413", "415"}
        assert expected <= set(answers), (method, path, sorted(answers))
        for code in expected:
            content = answers[code]["content"]
            assert content == {"application/problem+json": {"schema": PROBLEM}}, (path, code)
        retry = answers["503"]["headers"]["Retry-After"]
        assert retry["schema"] == {"type": "integer"}
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/v1/requests", "post", {"413", "415"}),
        ("/v1/authorize", "post", {"413", "415"}),
        ("/v1/requests/{request_id}/approve", "post", {"400", "413", "415"}),
        ("/v1/requests", "get", {"400"}),
    ],
)
def test_body_and_url_answers_are_where_a_call_can_get_them(
    schema: dict[str, Any], path: str, method: str, codes: set[str]
) -> None:
    assert codes <= set(schema["paths"][path][method]["responses"])
    shape = schema["paths"]["/v1/audit/verify"]["get"]  # no body, no parameter
    assert not {"400", "413", "415"} & set(shape["responses"])


def test_405_and_the_shared_answers_are_described(schema: dict[str, Any]) -> None:
    shared = schema["components"]["responses"]
    assert {"BadRequest", "MethodNotAllowed", "PayloadTooLarge", "ServiceUnavailable"} <= set(
        shared
    )
    assert "Allow" in shared["MethodNotAllowed"]["headers"]
    said = schema["info"]["description"]
    for words in ("405", "413", "415", "503", "Retry-After", "problem"):
        assert words in said


def test_the_answers_listed_are_the_answers_given(served: Served) -> None:
    """One call for each answer the schema adds, and what comes back."""
    jane = served.client("jane.doe@example.com")
    nul = jane.get("/v1/requests", params={"requester": "a\u0000b"})
    assert nul.status_code == 400
    big = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "x" * 300_000})
    assert big.status_code == 413
    wrong = jane.post("/v1/requests", content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    method = jane.put("/v1/requests/some-id")
    assert method.status_code == 405 and method.headers["allow"]
    for answer in (nul, big, wrong, method):
        assert answer.headers["content-type"] == "application/problem+json"
