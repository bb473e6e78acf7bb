"""Email over SMTP (STARTTLS and login, or implicit TLS): one mail per recipient, with a text
part and an HTML part and that recipient's own Approve, Deny and View links.

Configuration: ``smtp_host``, ``smtp_port`` (587), ``starttls`` (true), ``ssl`` (implicit TLS,
false), ``username_env``/``password_env``, ``sender``, ``ca_file`` (a CA bundle to trust, for a
private relay).

Invariants: the HTML part is rendered by Jinja2 with autoescaping; header values are free of
CR/LF and other control characters; ``Message-ID`` is derived from the outbox id, stable
across retries; credentials never appear in an error.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache
from typing import Any, ClassVar

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from jitgate.adapters.notifiers.base import (
    ChannelConfigError,
    Mode,
    NotifierDeps,
    setting,
    unset,
)
from jitgate.adapters.notifiers.render import facts, one_line, plain, title
from jitgate.adapters.plugin_config import (
    ConfigProblem,
    email_problems,
    flag_problems,
    text_problems,
    whole_problems,
)
from jitgate.service.delivery import DeliveryFailed, Sent
from jitgate.service.notifications import Message

TEXT = """{{ title }}

{% for label, value in facts %}{{ label }}: {{ value }}
{% endfor %}
Reason:
{{ reason }}
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
<p style="white-space: pre-wrap">{{ reason }}</p>
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
        "reason": plain(message.request.reason),
        "links": message.links,
        "request_id": message.request.id,
    }
    mail = EmailMessage()
    mail["From"] = one_line(sender, 320)
    mail["To"] = one_line(message.recipient, 320)
    subject = f"{title(message)}: {message.request.requester} ({message.request.id})"
    mail["Subject"] = one_line(subject, 200)
    mail["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "jitgate"
    mail["Message-ID"] = make_msgid(idstring=message.id or None, domain=one_line(domain, 100))
    mail["X-Jitgate-Request"] = one_line(message.request.id, 64)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(_templates().get_template("mail.txt").render(context))
    mail.add_alternative(_templates().get_template("mail.html").render(context), subtype="html")
    return mail


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
        mail = compose(message, self._sender)
        try:
            with self._connect() as smtp:
                if self._starttls:
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryFailed("recipient refused", retryable=False) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryFailed(
                "SMTP login refused", status=exc.smtp_code, retryable=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"SMTP {exc.smtp_code}", status=exc.smtp_code, retryable=exc.smtp_code < 500
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryFailed(
                "the server does not offer STARTTLS or AUTH", retryable=False
            ) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryFailed(f"SMTP connection failed ({type(exc).__name__})") from None
        return Sent(250)

    def _connect(self) -> smtplib.SMTP:
        if self._ssl:
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=self._tls()
            )
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        smtp.ehlo()
        return smtp
