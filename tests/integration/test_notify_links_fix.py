"""A one-click link is spent only by a decision that happened (SPEC §6, README "One-click
links"): a decision that fails leaves the link usable and the page never claims an action
that did not happen; an Approve link of someone who has already approved shows that instead
of a confirmation; racing uses of one person's links still give one outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from notify_sinks import HttpSink, Notify, ServedApi, channels, peer_env, with_notifications
from test_notify_links import MARK, Pages, csrf_of

from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.domain.states import State
from jitgate.entrypoints.api.app import create_app
from jitgate.service import decisions

pytest_plugins = ["conftest_notify"]


@pytest.fixture
def site(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> Iterator[Pages]:
    policy = with_notifications(example_policy, channels(http_sink), {})
    n = notify(db_url, policy, peer_env(http_sink))
    app = App(Settings(database_url=db_url), None, n.ctx, notify=n.rt)  # type: ignore[arg-type]
    served = ServedApi(create_app(app))
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        clients.append(httpx.Client(base_url=served.url, timeout=10))
        return clients[-1]

    yield Pages(n, client)
    for made in clients:
        made.close()
    served.stop()


def test_a_failed_approval_leaves_the_persons_deny_link_usable(site: Pages) -> None:
    """Mark opens his Approve link, then approves through the API; the form's POST fails
    (he approved already) and says so, and his Deny link still works."""
    request = site.n.create()
    approve, deny = site.link(request, "approve", MARK), site.link(request, "deny", MARK)
    browser = site.new_client()
    page = browser.get(approve)
    assert page.status_code == 200 and "Approve this request?" in page.text
    decisions.approve_request(site.n.ctx, request_id=request.id, approver=MARK, via="api")

    posted = browser.post(approve, data={"csrf": csrf_of(page.text)})
    assert posted.status_code == 410
    assert "already approved" in posted.text and "used this link" not in posted.text

    denying = browser.get(deny)
    assert denying.status_code == 200 and "Deny this request?" in denying.text
    done = browser.post(deny, data={"csrf": csrf_of(denying.text), "comment": "wrong host"})
    assert done.status_code == 200 and "You denied this request" in done.text
    assert site.state(request.id).state is State.DENIED
    used = browser.get(deny)
    assert used.status_code == 410 and "you denied this request" in used.text


def test_approving_twice_is_not_offered(site: Pages) -> None:
    """The confirmation page is not offered for an approval that would fail: it says what
    happened instead, changes nothing, and signs no browser in."""
    request = site.n.create()
    decisions.approve_request(site.n.ctx, request_id=request.id, approver=MARK, via="api")
    browser = site.new_client()
    page = browser.get(site.link(request, "approve", MARK))
    assert page.status_code == 410
    assert "You already approved this request" in page.text and "via api" in page.text
    assert 'name="csrf"' not in page.text and "set-cookie" not in page.headers
    assert [a.approver for a in site.state(request.id).approvals] == [MARK]
    denying = site.new_client().get(site.link(request, "deny", MARK))  # he may still deny
    assert denying.status_code == 200 and "Deny this request?" in denying.text


def test_racing_uses_of_one_persons_links_give_one_outcome(site: Pages) -> None:
    request = site.n.create()
    urls = [site.link(request, "approve", MARK), site.link(request, "deny", MARK)]
    browsers = [site.new_client() for _ in urls]
    forms = [csrf_of(b.get(u).text) for b, u in zip(browsers, urls, strict=True)]
    start = threading.Barrier(len(urls))
    answers: list[int] = []

    def post(i: int) -> None:
        start.wait()
        data = {"csrf": forms[i], "comment": "racing"}
        answers.append(browsers[i].post(urls[i], data=data).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(answers) == [200, 410]
    assert [a.approver for a in site.state(request.id).approvals] == [MARK]


@pytest.mark.parametrize("value, secure", [("1", True), ("true", True), ("", False)])
def test_jitgate_cookie_secure_marks_the_session_cookie_secure_behind_a_tls_proxy(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    value: str,
    secure: bool,
) -> None:
    policy = with_notifications(example_policy, channels(http_sink), {})
    n = notify(db_url, policy, {**peer_env(http_sink), "JITGATE_COOKIE_SECURE": value})
    app = App(Settings(database_url=db_url), None, n.ctx, notify=n.rt)  # type: ignore[arg-type]
    served = ServedApi(create_app(app))
    try:
        pages = Pages(n, lambda: httpx.Client(base_url=served.url, timeout=10))
        request = n.create()
        with pages.new_client() as browser:  # plain http, as behind a proxy that ends TLS
            cookie = browser.get(pages.link(request, "approve", MARK)).headers["set-cookie"]
    finally:
        served.stop()
    assert ("; secure" in cookie.lower()) is secure
