"""``ssh reap`` puts a remembered session id into a URL path as one encoded segment: a
state file that names ``../requests/X`` can never make it call another endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx

from jitgate.entrypoints.cli import ssh_sessions as sessions


def test_reap_encodes_the_session_id_as_one_segment(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(200, json={})

    gone = sessions.Login(2**22 + 7, 1, "../../requests/r1/revoke", "r1", "jane", "u", "k")
    sessions.remember(tmp_path, gone)  # its process does not exist: the connection closed
    with httpx.Client(base_url="http://jitgate", transport=httpx.MockTransport(answer)) as http:
        done = sessions.reap_once(http, tmp_path)
    assert seen == [b"/v1/sessions/..%2F..%2Frequests%2Fr1%2Frevoke/end"]
    assert len(done) == 1 and sessions.logins(tmp_path) == []
