"""A body not sent as JSON (text/plain, a form, no Content-Type) gets one answer on every
route: 415 problem+json saying to send ``Content-Type: application/json``. On
``/v1/authorize`` the fast path leaves such a call to the route, so both answer the same;
``application/json; charset=utf-8`` and ``application/*+json`` are taken as before."""

from __future__ import annotations

import json

import httpx
import pytest

from fast_count import Fast
from served import Served

JANE = "jane.doe@example.com"
DEV = {"user": JANE, "type": "ssh", "environment": "development"}
NOT_JSON = "the body must be JSON: send Content-Type: application/json"
REFUSED = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/json",
    "application/jsonx",
    None,  # no Content-Type at all
]
TAKEN = ["application/json", "application/json; charset=utf-8", "application/vnd.jitgate+json"]


def send(client: httpx.Client, path: str, body: object, media: str | None) -> httpx.Response:
    headers = {} if media is None else {"Content-Type": media}
    return client.post(path, content=json.dumps(body).encode(), headers=headers)


def assert_415(response: httpx.Response) -> None:
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unsupported media type",
        "status": 415,
        "detail": NOT_JSON,
    }


@pytest.mark.parametrize("media", REFUSED)
def test_a_body_not_sent_as_json_is_a_415_on_every_route(served: Served, media: str | None) -> None:
    jane, gateway = served.client(JANE), served.client("gateway")
    assert_415(send(jane, "/v1/requests", {"roles": ["dev-ssh"], "reason": "x"}, media))
    assert jane.get("/v1/requests").json()["items"] == []
    rid = jane.post("/v1/requests", json={"roles": ["staging-ssh"], "reason": "x"}).json()["id"]
    priya = served.client("priya@example.com")
    assert_415(send(priya, f"/v1/requests/{rid}/approve", {"comment": "ok"}, media))
    assert_415(send(priya, f"/v1/requests/{rid}/deny", {"reason": "no"}, media))
    assert_415(send(gateway, "/v1/sessions", {**DEV, "kind": "ssh"}, media))
    assert_415(send(gateway, "/v1/authorize", DEV, media))
    assert jane.get(f"/v1/requests/{rid}").json()["state"] == "pending"


def test_a_form_is_a_415(served: Served) -> None:
    form = served.client(JANE).post("/v1/requests", data={"roles": "dev-ssh", "reason": "x"})
    assert_415(form)


def test_the_token_is_checked_before_the_content_type(served: Served) -> None:
    """As for a bad JSON body: without a token it is a 401, a person's token on a gateway's
    route a 403, whatever the body."""
    anyone = served.client()
    for path in ("/v1/requests", "/v1/authorize"):
        assert send(anyone, path, DEV, "text/plain").status_code == 401
    assert send(served.client(JANE), "/v1/authorize", DEV, "text/plain").status_code == 403


def test_an_empty_body_needs_no_content_type(served: Served) -> None:
    """No body, nothing to read: an approval without a comment, as before."""
    jane = served.client(JANE)
    rid = jane.post("/v1/requests", json={"roles": ["staging-ssh"], "reason": "x"}).json()["id"]
    approved = served.client("priya@example.com").post(
        f"/v1/requests/{rid}/approve", headers={"Content-Type": "text/plain"}
    )
    assert approved.status_code == 200, approved.text


@pytest.mark.parametrize("media", REFUSED)
def test_authorize_answers_the_same_415_on_the_route_and_the_fast_path(
    served: Served, fast: Fast, media: str | None
) -> None:
    gateway = served.client("gateway")
    on_the_route = send(gateway, "/v1/authorize", DEV, media)  # the token's first use
    cached = send(gateway, "/v1/authorize", DEV, media)  # a call the fast path would take
    assert_415(on_the_route)
    assert_415(cached)
    assert cached.content == on_the_route.content
    assert fast.answered == 0
    assert gateway.post("/v1/authorize", json=DEV).status_code == 200
    assert fast.answered == 1, "the token was cached: a JSON call takes the fast path"


@pytest.mark.parametrize("media", TAKEN)
def test_authorize_takes_json_media_types_on_the_route_and_the_fast_path(
    served: Served, fast: Fast, media: str
) -> None:
    made = served.client(JANE).post(
        "/v1/requests", json={"roles": ["dev-ssh"], "reason": "x"}, headers={"Content-Type": media}
    )
    assert made.status_code == 201, made.text
    gateway = served.client("gateway")
    on_the_route, fast_one = (send(gateway, "/v1/authorize", DEV, media) for _ in range(2))
    assert fast.answered == 1
    assert on_the_route.status_code == fast_one.status_code == 200
    assert on_the_route.content == fast_one.content and fast_one.json()["allowed"] is True


def test_a_repeated_header_is_read_as_the_route_reads_it(served: Served, fast: Fast) -> None:
    """The first of a repeated header counts, on the fast path as on the route: a
    text/plain body is not taken for JSON, a person's token not for the gateway's."""
    gateway = served.client("gateway")
    assert gateway.post("/v1/authorize", json=DEV).status_code == 200  # the token is cached
    body = json.dumps(DEV).encode()
    bare = served.client()
    two_types = [("Content-Type", "text/plain"), ("Content-Type", "application/json")]
    token = [("Authorization", f"Bearer {served.tokens['gateway']}")]
    assert_415(bare.post("/v1/authorize", content=body, headers=token + two_types))
    served.client(JANE).get("/v1/requests")  # jane's token is cached too
    two_tokens = [("Authorization", f"Bearer {served.tokens[JANE]}"), *token]
    refused = bare.post(
        "/v1/authorize", content=body, headers=[*two_tokens, ("Content-Type", "application/json")]
    )
    assert refused.status_code == 403 and "service token" in refused.json()["detail"]
    assert fast.answered == 0
