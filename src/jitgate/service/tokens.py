"""API tokens: random, shown once, stored only as a SHA-256 hash.

A token has 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets

from jitgate.service.context import Context
from jitgate.service.ports import Principal

PREFIX = "jg_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(ctx: Context, *, principal: Principal) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    with ctx.uow() as uow:
        uow.tokens.add(hash_token(token), principal, ctx.clock.now())
        uow.commit()
    return token


def authenticate(ctx: Context, *, token: str) -> Principal | None:
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with ctx.uow(write=False, snapshot=False) as uow:
        return uow.tokens.find(hash_token(token))
