"""One-click links in a real browser: headless Chromium (Playwright driving /usr/bin/chromium,
no downloaded browser) against ``jitgate serve`` as a real process, with the links taken from
the e-mails a real SMTP server (aiosmtpd) received.

Shown: opening a link (as a mail scanner would) changes nothing; the confirmation form
decides once; the link then answers 410; another person's link opened in this browser is
403; a cross-site form post is 403; the View page shows the outcome.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from notify_sinks import Server, SmtpSink, _free_port, cli

from components import require

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"


@pytest.fixture
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (pip install -e '.[dev]') is missing")
    require(
        Path(CHROMIUM).exists() or shutil.which("chromium") is not None, f"{CHROMIUM} is missing"
    )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[SmtpSink]:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        require(False, "aiosmtpd is missing")
    sink = SmtpSink(tmp_path).start()
    yield sink
    sink.stop()


@pytest.fixture
def server(tmp_path: Path, mail: SmtpSink) -> Iterator[dict[str, Any]]:
    port = _free_port()
    policy = yaml.safe_load((REPO / "examples" / "policy.yaml").read_text())
    policy["settings"]["public_url"] = f"http://127.0.0.1:{port}"
    policy["notifications"] = {
        "channels": {
            "mail": {
                "type": "email",
                "smtp_host": "127.0.0.1",
                "smtp_port": mail.port,
                "starttls": True,
                "username_env": "SMTP_USER",
                "password_env": "SMTP_PASSWORD",
                "sender": "jit@example.com",
                "ca_file": str(mail.cert),
            }
        },
        "routes": {
            "request.created": {"to": "approvers", "via": ["mail"]},
            "request.denied": {"to": "requester", "via": ["mail"]},
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    db = f"sqlite:///{tmp_path}/jitgate.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env |= {
        "SMTP_USER": mail.username,
        "SMTP_PASSWORD": mail.password,
        "JITGATE_LINK_SECRET": "browser-test-link-secret-0123456789",
        "JITGATE_TICK_SECONDS": "0.2",
    }
    cli("db", "upgrade", "--db", db, env=env)
    tokens = {who: cli("token", "create", who, "--db", db, env=env).strip() for who in (JANE, MARK)}
    running = Server(env, path, db, tmp_path / "serve.log", port=port)
    yield {"url": running.url, "tokens": tokens, "mail": mail}
    running.kill()


def links_for(mail: SmtpSink, who: str, timeout: float = 20) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in mail.messages:
            if message["To"] == who:
                text = message.get_body(("plain",)).get_content()
                return {
                    m.group(1).lower(): m.group(2)
                    for m in re.finditer(r"^(Approve|Deny|View):\s+(\S+)", text, re.M)
                }
        time.sleep(0.1)
    raise AssertionError(f"no mail for {who}")


def browser(driver: Any, profile: Path) -> Any:
    """One person's browser: its own profile (``--user-data-dir``, given the Playwright way)."""
    return driver.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS
    )


def request_state(url: str, token: str, request_id: str) -> dict[str, Any]:
    got = httpx.get(
        f"{url}/v1/requests/{request_id}", headers={"authorization": f"Bearer {token}"}, timeout=10
    )
    assert got.status_code == 200, got.text
    return dict(got.json())


def test_one_click_links_in_a_browser(
    playwright: Any, server: dict[str, Any], tmp_path: Path
) -> None:
    url, tokens = server["url"], server["tokens"]
    created = httpx.post(
        f"{url}/v1/requests",
        headers={"authorization": f"Bearer {tokens[JANE]}"},
        json={"roles": ["sre-oncall"], "reason": "INC-7 <script>x</script>"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    marks, sams = links_for(server["mail"], MARK), links_for(server["mail"], SAM)
    assert set(marks) == {"approve", "deny", "view"}

    mark = browser(playwright, tmp_path / "mark-profile")
    try:
        page = mark.new_page()
        shown = page.goto(marks["approve"])
        assert shown.status == 200 and "Approve this request?" in page.inner_text("#heading")
        assert page.inner_text("#reason") == "INC-7 <script>x</script>"  # shown, not run
        assert request_state(url, tokens[JANE], request_id)["approvals"] == []  # GET: nothing

        page.fill("#comment", "looks right")
        with page.expect_navigation():
            page.click("#confirm")
        assert "You approved this request" in page.inner_text("#heading")
        approvals = request_state(url, tokens[JANE], request_id)["approvals"]
        assert [(a["approver"], a["decision"]) for a in approvals] == [(MARK, "approve")]

        again = page.goto(marks["approve"])
        assert again.status == 410 and "already used" in page.inner_text("#message")

        forwarded = page.goto(sams["approve"])  # sam's link, in mark's browser: as sam
        assert forwarded.status == 200 and page.inner_text("#person") == SAM

        attacker = mark.new_page()
        attacker.set_content(
            f'<form id="f" method="post" action="{sams["deny"]}">'
            '<input name="comment" value="csrf"></form>'
        )
        with attacker.expect_navigation() as nav:
            attacker.eval_on_selector("#f", "f => f.submit()")
        assert nav.value.status == 403
        assert request_state(url, tokens[JANE], request_id)["state"] == "pending"
    finally:
        mark.close()

    sam = browser(playwright, tmp_path / "sam-profile")
    try:
        page = sam.new_page()
        page.goto(sams["deny"])
        page.fill("#comment", "use the read replica")
        with page.expect_navigation():
            page.click("#confirm")
        assert "You denied this request" in page.inner_text("#heading")
        view = page.goto(sams["view"])
        assert view.status == 200 and page.inner_text("#state") == "denied"
        late = page.goto(sams["approve"])
        assert late.status == 410
    finally:
        sam.close()
    assert request_state(url, tokens[JANE], request_id)["state"] == "denied"
