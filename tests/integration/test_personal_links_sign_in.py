"""A personal link is proof of its own person (README "One-click links"): opening it signs the
browser in as that person, replacing a session of someone else, so a link someone else
planted in a browser (login CSRF) never locks its owner out of their own links; the page
always says who is signed in. And the page shows what people wrote without bidi or C1
controls, as every channel does."""

from __future__ import annotations

from test_notify_links import MARK, SAM, Pages, csrf_of
from test_notify_links_fix import site  # noqa: F401  (the module's site)

from jitgate.service import decisions

pytest_plugins = ["conftest_notify"]

HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x85\x9b"


def test_a_planted_link_does_not_lock_the_victim_out_of_their_own_links(site: Pages) -> None:  # noqa: F811
    """Sam gets Mark's browser to open Sam's personal link (login CSRF). Mark's own personal
    link then signs the browser in as Mark, and works; so does the shared link after it."""
    request = site.n.create()
    browser = site.new_client()
    planted = browser.get(site.link(request, "approve", SAM))
    assert planted.status_code == 200 and f'id="person">{SAM}<' in planted.text

    own = browser.get(site.link(request, "approve", MARK))
    assert own.status_code == 200, own.text
    assert "Approve this request?" in own.text and f'id="person">{MARK}<' in own.text
    assert "set-cookie" in own.headers

    shared = site.link(request, "approve", "")  # the Teams card's link: bound to nobody
    page = browser.get(shared)
    assert page.status_code == 200 and f'id="person">{MARK}<' in page.text

    done = browser.post(shared, data={"csrf": csrf_of(page.text), "comment": "mine"})
    assert done.status_code == 200 and "You approved" in done.text
    assert [a.approver for a in site.state(request.id).approvals] == [MARK]


def test_the_form_of_a_replaced_session_no_longer_acts(site: Pages) -> None:  # noqa: F811
    """The latest personal link wins: a form shown to the person signed in before is refused
    once another person's link signed the browser in, and nothing changes by a GET."""
    request = site.n.create()
    browser = site.new_client()
    sams = site.link(request, "deny", SAM)
    sam_form = csrf_of(browser.get(sams).text)
    assert browser.get(site.link(request, "approve", MARK)).status_code == 200
    refused = browser.post(sams, data={"csrf": sam_form, "comment": "planted"})
    assert refused.status_code == 403
    assert site.state(request.id).approvals == ()
    assert site.state(request.id).state.value == "pending"


def test_the_page_shows_what_people_wrote_without_bidi_or_c1_controls(site: Pages) -> None:  # noqa: F811
    request = site.n.create(reason=f"INC-9 deploy\u202etxt.exe{HIDDEN} now")
    decisions.approve_request(
        site.n.ctx, request_id=request.id, approver=SAM, via="api", comment=f"ok{HIDDEN}!"
    )
    page = site.new_client().get(site.link(request, "approve", MARK))
    assert page.status_code == 200
    assert "INC-9 deploytxt.exe now" in page.text and "ok!" in page.text
    assert sorted({f"U+{ord(c):04X}" for c in page.text if c in HIDDEN}) == []
