"""One-click links through the served pages (SPEC §6): prefetch, forwarded, tampered, reused,
expired, CSRF-less, the requester's own request, and the SSO-header mode."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from notify_sinks import HttpSink, Notify, ServedApi, channels, peer_env, with_notifications

from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.entrypoints.api.app import create_app
from jitgate.service import decisions
from jitgate.service.links import Link

pytest_plugins = ["conftest_notify"]

MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"


class Pages:
    def __init__(self, n: Notify, client: Callable[[], httpx.Client]) -> None:
        self.n = n
        self.new_client = client

    def link(
        self, request: AccessRequest, action: str, subject: str, expires: datetime | None = None
    ) -> str:
        token = self.n.rt.signer.mint(
            Link(request.id, action, subject, expires or request.expires_at, "mail")  # type: ignore[arg-type]
        )
        return f"/l/{token}"

    def opened(
        self, action: str, subject: str
    ) -> tuple[AccessRequest, str, httpx.Client, httpx.Response]:
        """A new request, ``subject``'s link to ``action`` it, a browser, and the page that
        browser got for the link (its confirm form)."""
        request = self.n.create()
        url = self.link(request, action, subject)
        browser = self.new_client()
        return request, url, browser, browser.get(url)

    def state(self, request_id: str) -> AccessRequest:
        with self.n.ctx.uow(write=False) as uow:
            found = uow.requests.get(request_id)
        assert found is not None
        return found


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
def pages(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> Iterator[Callable[..., Pages]]:
    clients: list[httpx.Client] = []
    servers: list[ServedApi] = []

    def make(env: dict[str, str] | None = None) -> Pages:
        policy = with_notifications(example_policy, channels(http_sink), {})
        n = notify(db_url, policy, {**peer_env(http_sink), **(env or {})})
        app = App(Settings(database_url=db_url), None, n.ctx, notify=n.rt)  # type: ignore[arg-type]
        served = ServedApi(create_app(app))
        servers.append(served)

        def client() -> httpx.Client:
            made = httpx.Client(base_url=served.url, timeout=10)
            clients.append(made)
            return made

        return Pages(n, client)

    yield make
    for made in clients:
        made.close()
    for served in servers:
        served.stop()


def test_prefetch_shows_and_changes_nothing_then_the_form_decides_once(
    pages: Callable[..., Pages], caplog: pytest.LogCaptureFixture
) -> None:
    p = pages()
    request = p.n.create()
    url = p.link(request, "approve", MARK)
    scanner, browser = p.new_client(), p.new_client()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            got = scanner.get(url)
            assert got.status_code == 200 and "Approve this request?" in got.text
            assert got.headers["cache-control"] == "no-store"
            assert got.headers["referrer-policy"] == "no-referrer"
            assert got.headers["x-frame-options"] == "DENY"
        assert p.state(request.id).approvals == ()
        page = browser.get(url)
        assert MARK in page.text and request.id in page.text
        done = browser.post(url, data={"csrf": csrf_of(page.text), "comment": "ok <b>"})
        assert done.status_code == 200 and "You approved this request" in done.text
        again = browser.post(url, data={"csrf": csrf_of(page.text)})
        assert again.status_code == 410
        assert browser.get(url).status_code == 410
    approvals = p.state(request.id).approvals
    assert [(a.approver, a.via, a.comment) for a in approvals] == [(MARK, "link", "ok <b>")]
    assert url.split("/")[-1] not in caplog.text
    assert url.split(".")[-1] not in caplog.text


def test_a_forwarded_link_acts_only_as_its_own_person(pages: Callable[..., Pages]) -> None:
    """A personal link is proof of its person: opened in Mark's browser, Sam's link signs
    it in as Sam (and says so); Mark's form, shown before, acts for no one any more."""
    p = pages()
    request = p.n.create()
    browser = p.new_client()
    mine = browser.get(p.link(request, "approve", MARK))
    assert mine.status_code == 200
    forwarded = p.link(request, "approve", SAM)
    got = browser.get(forwarded)
    assert got.status_code == 200 and f'id="person">{SAM}<' in got.text
    posted = browser.post(forwarded, data={"csrf": csrf_of(mine.text)})
    assert posted.status_code == 403
    assert p.state(request.id).approvals == ()


def test_a_tampered_token_is_not_recognised(pages: Callable[..., Pages]) -> None:
    p = pages()
    request = p.n.create()
    url = p.link(request, "approve", MARK)
    browser = p.new_client()
    middle = url.index(".") + 10
    flipped = url[:middle] + ("A" if url[middle] != "A" else "B") + url[middle + 1 :]
    for bad in (url[:-3] + "AAA", flipped, "/l/v1.e30.AAAA", "/l/garbage", "/l/" + "A" * 3000):
        got = browser.get(bad)
        assert got.status_code == 404 and "not recognised" in got.text
        assert browser.post(bad, data={"csrf": "x"}).status_code == 404


def test_an_expired_link_is_gone(pages: Callable[..., Pages]) -> None:
    p = pages()
    request, url, browser, page = p.opened("approve", MARK)
    p.n.clock.set(request.expires_at + timedelta(seconds=1))
    got = browser.get(url)
    assert got.status_code == 410 and "expired" in got.text
    assert browser.post(url, data={"csrf": csrf_of(page.text)}).status_code == 410
    early = p.link(request, "deny", MARK, expires=request.created_at + timedelta(minutes=1))
    assert browser.get(early).status_code == 410


def test_only_a_link_that_can_still_act_signs_a_browser_in(pages: Callable[..., Pages]) -> None:
    """A used, expired or view link never mints a session (which could act on links bound to
    nobody, from shared channels); a live one mints one that ends when the link would."""
    p = pages()
    request, url, browser, page = p.opened("approve", MARK)
    minted = page.headers["set-cookie"]
    max_age = int(re.search(r"Max-Age=(\d+)", minted, re.I).group(1))  # type: ignore[union-attr]
    left = (request.expires_at - p.n.clock.now()).total_seconds()
    assert 0 < max_age <= left
    browser.post(url, data={"csrf": csrf_of(page.text), "comment": "ok"})
    used = p.new_client().get(url)
    assert used.status_code == 410 and "set-cookie" not in used.headers

    other = p.n.create()
    assert "set-cookie" not in p.new_client().get(p.link(other, "view", MARK)).headers
    stale = p.link(other, "approve", MARK)
    p.n.clock.set(other.expires_at)
    expired = p.new_client().get(stale)
    assert expired.status_code == 410 and "set-cookie" not in expired.headers


def test_a_post_from_another_site_is_refused(pages: Callable[..., Pages]) -> None:
    p = pages()
    request, url, browser, page = p.opened("approve", MARK)
    form = {"csrf": csrf_of(page.text)}
    elsewhere = browser.post(url, data=form, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and p.state(request.id).approvals == ()
    own = str(browser.base_url).rstrip("/")
    assert browser.post(url, data=form, headers={"Origin": own}).status_code == 200


def test_a_post_without_the_page_token_is_refused(pages: Callable[..., Pages]) -> None:
    p = pages()
    request = p.n.create()
    url = p.link(request, "approve", MARK)
    attacker = p.new_client()
    assert attacker.post(url, data={}).status_code == 403
    victim = p.new_client()
    page = victim.get(url)
    assert victim.post(url, data={"csrf": "forged"}).status_code == 403
    other = p.new_client()
    other.get(url)
    assert other.post(url, data={"csrf": csrf_of(page.text)}).status_code == 403
    cross = victim.post(
        url, data={"csrf": csrf_of(page.text)}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    assert p.state(request.id).approvals == ()


def test_after_someone_else_decided_the_page_says_what_happened(
    pages: Callable[..., Pages],
) -> None:
    p = pages()
    request, url, browser, page = p.opened("approve", MARK)
    decisions.deny_request(p.n.ctx, request_id=request.id, approver=SAM, reason="not today")
    got = browser.get(url)
    assert got.status_code == 410 and f"denied by {SAM}" in got.text
    assert browser.post(url, data={"csrf": csrf_of(page.text)}).status_code == 410


def test_deny_with_a_reason(pages: Callable[..., Pages]) -> None:
    p = pages()
    request, url, browser, page = p.opened("deny", SAM)
    assert "Deny this request?" in page.text and "required" in page.text
    for blank in ("", "   "):  # SPEC §3: a deny needs a reason on every path
        refused = browser.post(url, data={"csrf": csrf_of(page.text), "comment": blank})
        assert refused.status_code == 422 and "needs a reason" in refused.text
    assert p.state(request.id).state is State.PENDING  # and the link is not used up
    done = browser.post(url, data={"csrf": csrf_of(page.text), "comment": "use the runbook"})
    assert done.status_code == 200 and "denied" in done.text
    found = p.state(request.id)
    assert found.state is State.DENIED and found.close_reason == "use the runbook"


def test_a_comment_holding_a_nul_is_refused_and_changes_nothing(
    pages: Callable[..., Pages],
) -> None:
    p = pages()
    request, url, browser, page = p.opened("approve", MARK)
    done = browser.post(url, data={"csrf": csrf_of(page.text), "comment": "ok\x00"})
    assert done.status_code == 422 and "NUL" in done.text
    assert p.state(request.id).state is State.PENDING and not p.state(request.id).approvals
    again = browser.post(url, data={"csrf": csrf_of(page.text), "comment": "ok"})
    assert again.status_code == 200  # the link was not used up by the refused post


def test_the_requester_never_decides_through_a_link(pages: Callable[..., Pages]) -> None:
    p = pages()
    request = p.n.create()
    url = p.link(request, "approve", JANE)  # validly signed, yet for the requester
    browser = p.new_client()
    got = browser.get(url)
    assert got.status_code == 403 and "never decide their own" in got.text
    assert browser.post(url, data={"csrf": "x"}).status_code == 403
    assert p.state(request.id).approvals == ()


def test_a_leaked_personal_link_never_lends_its_name_to_another_request(
    pages: Callable[..., Pages],
) -> None:
    """Jane gets hold of Mark's link to someone else's request. Before, opening it signed
    her browser in as Mark for every request, so the shared-channel link to her own request
    approved it as Mark. A browser now acts, on links bound to nobody, only for the requests
    whose own personal link it opened."""
    p = pages()
    others = p.n.create(requester="ravi@example.com")
    hers = p.n.create()  # jane's own: mark must approve
    browser = p.new_client()
    assert browser.get(p.link(others, "approve", MARK)).status_code == 200  # signed in, for it
    shared = p.link(hers, "approve", "")  # her request's Teams card: bound to nobody
    page = browser.get(shared)
    assert page.status_code == 403 and "sent to you personally" in page.text
    assert browser.post(shared, data={"csrf": "x"}).status_code == 403
    assert p.state(hers.id).approvals == ()

    # mark himself: his own link to a request, then that request's shared link, works
    marks = p.new_client()
    own = marks.get(p.link(hers, "deny", MARK))
    assert own.status_code == 200
    again = marks.get(p.link(others, "approve", MARK))  # a second request joins the session
    assert again.status_code == 200
    done = marks.post(shared, data={"csrf": csrf_of(marks.get(shared).text)})
    assert done.status_code == 200 and "You approved" in done.text
    other_form = marks.post(p.link(others, "approve", MARK), data={"csrf": csrf_of(again.text)})
    assert other_form.status_code == 200  # the first form still works: the nonce was kept
    assert [a.approver for a in p.state(hers.id).approvals] == [MARK]


def test_sso_header_mode(pages: Callable[..., Pages]) -> None:
    p = pages({"JITGATE_WEB_USER_HEADER": "X-Forwarded-Email"})
    request = p.n.create()
    shared = p.link(request, "approve", "")  # from a shared channel: bound to nobody
    browser = p.new_client()
    assert browser.get(shared).status_code == 403  # no header: nobody known
    as_jane = browser.get(shared, headers={"x-forwarded-email": JANE})
    assert as_jane.status_code == 403 and "never decide their own" in as_jane.text
    as_sam = browser.get(shared, headers={"x-forwarded-email": SAM})
    assert as_sam.status_code == 200
    bound = p.link(request, "approve", MARK)
    assert browser.get(bound, headers={"x-forwarded-email": SAM}).status_code == 403
    done = browser.post(
        shared, data={"csrf": csrf_of(as_sam.text)}, headers={"x-forwarded-email": SAM}
    )
    assert done.status_code == 200
    assert [a.approver for a in p.state(request.id).approvals] == [SAM]


def test_view_shows_the_request(pages: Callable[..., Pages]) -> None:
    p = pages()
    request = p.n.create(reason="<script>alert(1)</script>")
    browser = p.new_client()
    url = p.link(request, "view", JANE, expires=request.created_at + timedelta(days=7))
    got = browser.get(url)
    assert got.status_code == 200 and request.id in got.text and "pending" in got.text
    assert "<script>alert" not in got.text and "&lt;script&gt;" in got.text
    assert "<form" not in got.text
