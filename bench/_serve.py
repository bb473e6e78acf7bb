"""The servers under test, each run in its own process by ``bench._servers.served``.

``python -m bench._serve jitgate --port P --db URL --policy FILE``: jitgate's own app
(``bootstrap`` + ``create_app``), API only, no scheduler thread.
``python -m bench._serve bare --port P --db URL``: the baseline, a bare FastAPI app with
``POST /v1/authorize`` (async, returns a small JSON), ``POST /sync`` (the same, as a sync
route run in the thread pool), ``POST /insert`` (one SQLite insert through SQLAlchemy
Core on an engine from jitgate's own ``connect``, so WAL and the same pragmas), and
``POST /raw`` (the same answer from a plain ASGI callable in front of the app).

Both are served by one uvicorn worker with the settings of ``jitgate serve``
(``log_level="warning"``, ``access_log=False``, uvloop and httptools when installed):
jitgate through ``serve_api``, the function ``jitgate serve`` calls (which also takes the
startup heap out of the garbage collector's reach), the bare app by ``uvicorn.run``.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


def bare_app(db_url: str | None) -> FastAPI:
    from jitgate.adapters.db.engine import connect

    api = FastAPI(title="bare")
    items = sa.Table(
        "bench_items",
        sa.MetaData(),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    db = connect(db_url) if db_url else None
    if db is not None:
        items.metadata.create_all(db.engine)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/v1/authorize")
    async def authorize(body: dict[str, Any]) -> dict[str, Any]:
        return {"allowed": True, "user": body.get("user")}

    @api.post("/sync")
    def authorize_sync(body: dict[str, Any]) -> dict[str, Any]:
        return {"allowed": True, "user": body.get("user")}

    @api.post("/insert", status_code=201)
    def insert(body: dict[str, Any]) -> dict[str, str]:
        assert db is not None, "start with --db"
        row_id = str(uuid.uuid4())
        conn = db.engine.connect().execution_options(jitgate_write=True)
        with conn, conn.begin():
            conn.execute(
                items.insert().values(
                    id=row_id,
                    body=json.dumps(body),
                    created_at=datetime.now(UTC).isoformat(),
                )
            )
        return {"id": row_id}

    return api


def raw_in_front(api: FastAPI) -> ASGIApp:
    """``POST /raw`` answered by a plain ASGI callable (no framework at all; the same small
    JSON as the bare ``/v1/authorize``); everything else goes to ``api``. The floor that
    jitgate's authorize fast path, which also skips the framework, is compared with."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/raw":
            await api(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        out = json.dumps({"allowed": True, "user": json.loads(body).get("user")}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def jitgate_app(db_url: str, policy: str) -> FastAPI:
    from jitgate.bootstrap import bootstrap
    from jitgate.config import Settings
    from jitgate.entrypoints.api.app import create_app

    app = bootstrap(Settings(policy_path=policy, database_url=db_url, scheduler=False))
    return create_app(app)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["bare", "jitgate"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db")
    p.add_argument("--policy")
    args = p.parse_args()
    if args.kind == "bare":
        uvicorn.run(
            raw_in_front(bare_app(args.db)),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
    else:
        from jitgate.entrypoints.api.app import serve_api

        serve_api(jitgate_app(args.db, args.policy), "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
