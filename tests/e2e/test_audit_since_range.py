"""``GET /v1/audit?since=`` with a time that exists in its own offset but not in UTC."""

from __future__ import annotations

import pytest
from test_bad_input import assert_problem

from served import Served


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+01:00"])
def test_a_since_out_of_range_in_utc_is_a_422(served: Served, since: str) -> None:
    answer = served.client("sec@example.com").get("/v1/audit", params={"since": since})
    assert_problem(answer, 422, "out of range in UTC")


def test_a_since_in_another_offset_is_compared_in_utc(served: Served) -> None:
    sec = served.client("sec@example.com")
    assert sec.get("/v1/audit", params={"since": "2000-01-01T05:30:00+05:30"}).json()["items"]
    late = sec.get("/v1/audit", params={"since": "9999-12-31T10:00:00+05:30"})
    assert late.status_code == 200 and late.json()["items"] == []
