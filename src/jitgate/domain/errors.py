"""Domain errors. Each names the kind of refusal; entrypoints map kinds to their own codes."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal the domain makes; ``str()`` is safe to show the caller."""

    title = "Request refused"


class Invalid(DomainError):
    """The input is malformed or breaks a policy bound (HTTP 422)."""

    title = "Invalid request"


class Forbidden(DomainError):
    """Policy does not allow this caller to do this (HTTP 403)."""

    title = "Forbidden"


class NotFound(DomainError):
    """No such object, or the caller may not know it exists (HTTP 404)."""

    title = "Not found"


class Conflict(DomainError):
    """The object is not in a state that allows this (HTTP 409)."""

    title = "Conflict"


class Gone(DomainError):
    """The thing existed but may no longer be used (HTTP 410)."""

    title = "Gone"


class Unavailable(DomainError):
    """Not on this replica, not now: nothing was changed; try again in ``retry_after``
    seconds, or elsewhere (HTTP 503 with ``Retry-After``)."""

    title = "Service unavailable"
    retry_after = 5
