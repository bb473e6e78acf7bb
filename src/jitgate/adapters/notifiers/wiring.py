"""Assembling notifications for one process: planner, channels, link signer, delivery.

``bootstrap`` calls ``runtime(ctx)`` once: it installs the route planner in the service
context and returns what the scheduler job, the link pages and the Slack actions need.
Environment variables are read here, when called, never at import time, through
``jitgate.config.NotifySettings`` (which ``Settings.from_env`` checked before the process
did anything):

- ``JITGATE_LINK_SECRET``: the key of one-click links (random per process when unset);
- ``JITGATE_DELIVERY``: ``0`` turns delivery off in this process (an API-only replica);
- ``JITGATE_WEB_USER_HEADER``: a header set by a trusted SSO proxy naming the signed-in
  person (e.g. ``X-Forwarded-Email``); when set, link pages trust it, and only it;
- ``JITGATE_NOTIFY_MAX_ATTEMPTS``, ``JITGATE_NOTIFY_CONCURRENCY`` (per channel),
  ``JITGATE_NOTIFY_TIMEOUT`` (seconds a send may take in all; the claim lease follows it):
  delivery tuning.

Invariant: the notifiers' HTTP client ends every send by its deadline
(``deadline.DeadlineTransport``), whatever the peer does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from jitgate.adapters.db.notify_repos import deliveries_of, link_uses_of
from jitgate.adapters.links import HmacLinkSigner
from jitgate.adapters.notifiers import slack
from jitgate.adapters.notifiers.base import ChannelConfigError, NotifierDeps
from jitgate.adapters.notifiers.deadline import deadline_client
from jitgate.adapters.notifiers.registry import ChannelSet
from jitgate.config import NotifySettings
from jitgate.domain.policy import Policy
from jitgate.service.context import Context
from jitgate.service.delivery import Delivery, DeliveryJob, DeliveryOptions
from jitgate.service.links import LinkUsesOf
from jitgate.service.notifications import RoutePlanner

T = TypeVar("T")


@dataclass(frozen=True)
class SlackApp:
    """What answering a Slack interaction needs from one slack channel's config."""

    channel: str
    signing_secret: str
    bot_token: str | None
    api_url: str
    response_url_prefix: str


@dataclass(frozen=True)
class WebOptions:
    user_header: str | None = None
    session_hours: int = 12
    cookie_secure: bool = False  # JITGATE_COOKIE_SECURE: behind a proxy that ends TLS


@dataclass
class NotifyRuntime:
    channels: ChannelSet
    planner: RoutePlanner
    signer: HmacLinkSigner
    delivery: Delivery
    job: DeliveryJob
    link_uses_of: LinkUsesOf
    http: httpx.Client
    env: Mapping[str, str]
    web: WebOptions = field(default_factory=WebOptions)
    enabled: bool = True

    def jobs(self) -> list[Any]:
        """The scheduler's extra jobs: delivery, unless turned off in this process."""
        return [self.job] if self.enabled else []

    def slack_apps(self, policy: Policy) -> list[SlackApp]:
        apps = []
        for name, config in policy.notifications.channels.items():
            if config.get("type") != "slack" or not config.get("signing_secret_env"):
                continue
            secret = self.env.get(str(config["signing_secret_env"]), "")
            if not secret:
                continue
            token_env = config.get("bot_token_env")
            token = self.env.get(str(token_env), "") if token_env else ""
            try:
                api, prefix = (
                    slack.api_url(config, self.env),
                    slack.response_url_prefix(config, self.env),
                )
            except ChannelConfigError:  # a URL's *_env variable unset: the channel is off
                continue
            apps.append(SlackApp(name, secret, token or None, api, prefix))
        return apps

    def close(self) -> None:
        self.job.wait(5.0)
        self.delivery.close()
        self.http.close()


def _channels(
    env: Mapping[str, str], http: httpx.Client | None, options: DeliveryOptions
) -> tuple[ChannelSet, httpx.Client]:
    client = http or deadline_client(
        httpx.Limits(max_connections=64), httpx.Timeout(10.0, connect=5.0)
    )
    deps = NotifierDeps(http=client, env=env, smtp_timeout=min(10.0, options.send_timeout))
    return ChannelSet(deps), client


def runtime(
    ctx: Context,
    *,
    env: Mapping[str, str] | None = None,
    http: httpx.Client | None = None,
    options: DeliveryOptions | None = None,
) -> NotifyRuntime:
    """Build this process's notifications and install their planner in ``ctx``."""
    environ = dict(os.environ if env is None else env)
    for name in ("httpx", "httpcore"):  # they log request URLs, and webhook URLs are secrets
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
    tuning = NotifySettings.from_env(environ)
    options = options or delivery_options(tuning)
    channels, client = _channels(environ, http, options)
    planner = RoutePlanner(channels.mode)
    ctx.planner = planner
    signer = HmacLinkSigner.from_env(environ)
    delivery = Delivery(ctx, deliveries_of, channels, signer, options)
    web = WebOptions(user_header=tuning.web_user_header, cookie_secure=tuning.cookie_secure)
    for name, config in ctx.policy.current.notifications.channels.items():
        channels.mode(name, config)  # warn now about channels this process cannot use
    return NotifyRuntime(
        channels=channels,
        planner=planner,
        signer=signer,
        delivery=delivery,
        job=DeliveryJob(delivery),
        link_uses_of=link_uses_of,
        http=client,
        env=environ,
        web=web,
        enabled=tuning.enabled,
    )


def delivery_options(tuning: NotifySettings) -> DeliveryOptions:
    """The delivery's options: its defaults, but for the tuning the settings set."""
    base = DeliveryOptions()
    return DeliveryOptions(
        max_attempts=_or(tuning.max_attempts, base.max_attempts),
        concurrency=_or(tuning.concurrency, base.concurrency),
        send_timeout=_or(tuning.send_timeout, base.send_timeout),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
