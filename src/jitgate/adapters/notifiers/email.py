"""Email over SMTP (STARTTLS and login, or implicit TLS): one mail per recipient, with a text
part and an HTML part and that recipient's own Approve, Deny and View links.

Configuration: ``smtp_host``, ``smtp_port`` (587), ``starttls`` (true), ``ssl`` (implicit TLS,
false), ``username_env``/``password_env``, ``sender``, ``ca_file`` (a CA bundle to trust, for a
private relay).

Invariants: the HTML part is rendered by Jinja2 with autoescaping; in the text part, every
line someone wrote is apart from jitgate's own: the reason's lines are quoted (``> ``) and a
fact (a deny reason among them) is one line after its label, so no text can pass for the
Approve or Deny link or the footer; header values are free of
CR/LF and other control characters; ``Message-ID`` is ``<outbox-id@jitgate.host>``, the
same on every retry; the whole SMTP exchange ends by the send's deadline; credentials never
appear in an error.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Mapping
from contextlib import suppress
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from jitgate.adapters.notifiers.base import (
    ChannelConfigError,
    Mode,
    NotifierDeps,
    setting,
    unset,
)
from jitgate.adapters.notifiers.deadline import Cutoff
from jitgate.adapters.notifiers.render import facts, one_line, plain, quoted, title
from jitgate.adapters.plugin_config import (
    ConfigProblem,
    email_problems,
    flag_problems,
    text_problems,
    whole_problems,
)
from jitgate.service.delivery import DeliveryFailed, Sent
from jitgate.service.delivery_deadline import timeout_reason, within
from jitgate.service.notifications import Message

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")
FACT_LIMIT = 2000  # a fact (a deny reason among them) on one line of the text part

TEXT = """{{ title }}

{% for label, value in text_facts %}{{ label }}: {{ value }}
{% endfor %}
Reason:
{{ quoted_reason }}
{% if links.approve %}
Approve: {{ links.approve }}
Deny:    {{ links.deny }}{% endif %}{% if links.view %}
View:    {{ links.view }}{% endif %}

-- jitgate, request {{ request_id }}
"""

HTML = """<!doctype html>
<html><body style="font-family: sans-serif">
<h2>{{ title }}</h2>
<table>{% for label, value in facts %}
<tr><th align="left" style="padding-right:1em">{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
<h3>Reason</h3>
<blockquote style="white-space: pre-wrap; margin: 0 0 1em; padding-left: .75em;
 border-left: 3px solid #ccc">{{ reason }}</blockquote>
<p>{% if links.approve %}<a href="{{ links.approve }}">Approve</a> &middot;
<a href="{{ links.deny }}">Deny</a> &middot; {% endif %}{% if links.view %}
<a href="{{ links.view }}">View details</a>{% endif %}</p>
<p style="color:#666">jitgate &middot; request {{ request_id }}.
Links open a confirmation page; nothing is decided until you confirm there.</p>
</body></html>
"""


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(
        loader=DictLoader({"mail.txt": TEXT, "mail.html": HTML}),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def compose(message: Message, sender: str) -> EmailMessage:
    """The mail for ``message.recipient``: text and HTML alternatives, safe headers."""
    if not message.recipient:
        raise DeliveryFailed("an email needs a recipient", retryable=False)
    context = {
        "title": title(message),
        "facts": [(label, plain(value)) for label, value in facts(message)],
        "text_facts": [(label, one_line(value, FACT_LIMIT)) for label, value in facts(message)],
        "reason": plain(message.request.reason),
        "quoted_reason": quoted(message.request.reason),
        "links": message.links,
        "request_id": message.request.id,
    }
    mail = EmailMessage()
    mail["From"] = one_line(sender, 320)
    mail["To"] = one_line(message.recipient, 320)
    subject = f"{title(message)}: {message.request.requester} ({message.request.id})"
    mail["Subject"] = one_line(subject, 200)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message, sender)
    mail["X-Jitgate-Request"] = one_line(message.request.id, 64)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(_templates().get_template("mail.txt").render(context))
    mail.add_alternative(_templates().get_template("mail.html").render(context), subtype="html")
    return mail


def message_id(message: Message, sender: str) -> str:
    """``<outbox-id@jitgate.host>``, the host of ``public_url`` (from the View link) or of the
    sender: the same on every attempt, so a mail sent twice is one message to mail clients."""
    view = message.links.view
    host = (urlsplit(view).hostname if view else None) or sender.rpartition("@")[2]
    domain = _ID_UNSAFE.sub("", host or "").strip(".-")[:100] or "localhost"
    local = _ID_UNSAFE.sub("", message.id)[:100]
    if not local:  # no outbox row (a message composed for a preview): unique instead
        return make_msgid(domain=f"jitgate.{domain}")
    return f"<{local}@jitgate.{domain}>"


class _Session:
    """One send's SMTP connection, visible to its ``Cutoff`` from before it connects."""

    smtp: smtplib.SMTP | None = None

    def sock(self) -> socket.socket | None:
        return getattr(self.smtp, "sock", None)


class _SMTP(smtplib.SMTP):
    def __init__(self, host: str, port: int, *, timeout: float, session: _Session) -> None:
        session.smtp = self
        super().__init__(host, port, timeout=timeout)


class _SMTPS(smtplib.SMTP_SSL):
    def __init__(
        self, host: str, port: int, *, timeout: float, context: ssl.SSLContext, session: _Session
    ) -> None:
        session.smtp = self
        super().__init__(host, port, timeout=timeout, context=context)


def _failure(exc: Exception) -> DeliveryFailed:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return DeliveryFailed("recipient refused", retryable=False)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryFailed("SMTP login refused", status=exc.smtp_code, retryable=False)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return DeliveryFailed(f"SMTP {code}", status=code, retryable=code < 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryFailed("the server does not offer STARTTLS or AUTH", retryable=False)
    return DeliveryFailed(f"SMTP connection failed ({type(exc).__name__})")


class EmailNotifier:
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "smtp_host",
        "smtp_port",
        "starttls",
        "ssl",
        "username",
        "username_env",
        "password_env",
        "sender",
        "ca_file",
    )

    def __init__(self, name: str, config: Mapping[str, Any], deps: NotifierDeps) -> None:
        self.name = name
        host = config.get("smtp_host")
        sender = config.get("sender")
        if not isinstance(host, str) or not isinstance(sender, str):
            raise ChannelConfigError("an email channel needs smtp_host and sender")
        self._host = host
        self._sender = sender
        self._ssl = bool(config.get("ssl", False))
        self._port = int(config.get("smtp_port") or (465 if self._ssl else 587))
        self._starttls = bool(config.get("starttls", True)) and not self._ssl
        self._username = setting(config, "username", deps.env)
        self._password = setting(config, "password", deps.env)
        ca_file = config.get("ca_file")
        self._ca_file = str(ca_file) if ca_file else None
        self._timeout = deps.smtp_timeout

    @classmethod
    def mode(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode:
        return "person"

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [
            *text_problems(config, "smtp_host", "username", "ca_file"),
            *whole_problems(config, "smtp_port", minimum=1, maximum=65535),
            *flag_problems(config, "starttls", "ssl"),
            *email_problems(config, "sender"),
        ]

    @classmethod
    def missing_env(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        return unset(config, env, "username", "password")

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._ca_file)

    def send(self, message: Message) -> Sent:
        """Hand the mail to the relay; the whole exchange ends by the send's deadline (the
        connection is cut then, however slowly the server answers)."""
        mail = compose(message, self._sender)
        session = _Session()
        with Cutoff(session.sock) as cutoff:
            try:
                self._transfer(session, mail)
            except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
                if cutoff.fired:
                    raise DeliveryFailed(timeout_reason()) from None
                raise _failure(exc) from None
        return Sent(250)

    def _transfer(self, session: _Session, mail: EmailMessage) -> None:
        smtp = self._connect(session)
        try:
            if self._starttls:
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(mail)
        except BaseException:
            smtp.close()
            raise
        with suppress(smtplib.SMTPException, OSError):  # accepted: a failed goodbye is no
            smtp.quit()  # reason to send it again
        smtp.close()

    def _connect(self, session: _Session) -> smtplib.SMTP:
        timeout = within(self._timeout)
        if self._ssl:
            return _SMTPS(
                self._host, self._port, timeout=timeout, context=self._tls(), session=session
            )
        smtp = _SMTP(self._host, self._port, timeout=timeout, session=session)
        smtp.ehlo()
        return smtp
