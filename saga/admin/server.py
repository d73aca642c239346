"""Routes and server of the admin API (aiohttp), bound to loopback unless configured.

With a token set, every route but the probes (``/healthz``, ``/readyz``) needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiMapping
from pydantic import ValidationError

from saga.address import AdminSettings
from saga.admin.openapi import OPENAPI
from saga.client import SagaClient
from saga.console import is_console_path, mount_console
from saga.core.state import InstanceState
from saga.engine.operator import ACTIONS, EMIT, ActionRequest, token_matches
from saga.engine.view import EngineView
from saga.index import SagaQuery, SagaSummary
from saga.protocol import HEADER_AUTHORIZATION, HEADER_NEXT_CURSOR
from saga.telemetry import trace_id_of

log = logging.getLogger("saga.admin")
OPEN_PATHS = {"/healthz", "/readyz"}
STATES = ("running", "compensating", "completed", "compensated", "parked", "terminated")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _dump(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _summary(s: InstanceState | SagaSummary) -> Any:
    body = {
        "saga_id": s.saga_id,
        "saga_name": s.saga_name,
        "saga_version": s.saga_version,
        "status": s.status.value,
        "started_at": s.started_at,
        "updated_at": s.updated_at,
        "finished_at": s.finished_at,
    }
    if isinstance(s, SagaSummary):
        body["search"] = s.search
    return _dump(body)


def query_from(
    params: MultiMapping[str], name: str | None, state: str | None, limit: int
) -> SagaQuery:
    """The index query of ``GET /sagas``'s parameters; ``ValueError`` for a bad one."""
    where = {}
    for pair in params.getall("where", []):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"where={pair!r}: expected NAME=VALUE")
        where[key] = value
    query = SagaQuery(
        saga=name,
        state=state,
        since=_moment(params.get("since")),
        until=_moment(params.get("until")),
        where=where,
        limit=limit,
        cursor=params.get("cursor"),
    )
    query.check()
    return query


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AdminServer:
    def __init__(self, engine: EngineView, settings: AdminSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/definitions", self.definitions)
        app.router.add_get("/sagas", self.sagas)
        app.router.add_get("/sagas/{saga_id}", self.saga)
        app.router.add_post("/sagas/{saga_id}/{action}", self.action)
        mount_console(app, self.engine, self.settings.token)  # signs in on its own
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.port
        url = f"http://{self.settings.host}:{self.port}"
        log.info("admin API on %s, console on %s/console/", url, url)
        return url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.settings.token
        given = request.headers.get(HEADER_AUTHORIZATION)
        if (
            token
            and request.path not in OPEN_PATHS
            and not is_console_path(request.path)
            and not token_matches(given, token)
        ):
            return _error(401, "missing or wrong bearer token")
        return await handler(request)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        health = self.engine.health()
        reasons = []
        if not health.connected:
            reasons.append("not connected to NATS")
        if not health.ready:
            reasons.append("streams, bucket or consumers not ready")
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        body: dict[str, Any] = {"status": "ready", "replica": health.replica}
        if health.stranded:  # still served: the versions stay loaded until a restart
            body["stranded"] = [s.to_json() for s in health.stranded]
        if health.partitions:
            body["partitions"] = {"count": health.partitions, "owned": list(health.owned)}
        if health.limits:
            body["limits"] = {c.key: c.to_json() for c in health.limits}
        return web.json_response(body)

    async def metrics(self, _: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def definitions(self, _: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "name": d.name,
                    "version": d.version,
                    "description": d.description,
                    "trigger": d.trigger.event,
                    "steps": [
                        {
                            "name": s.name,
                            "driven": s.driven,
                            "publish": s.publish.event if s.publish else None,
                            "success": list(s.success),
                            "failure": list(s.failure),
                            "compensate": s.compensate.publish.event if s.compensate else None,
                        }
                        for s in d.steps
                    ],
                }
                for d in self.engine.catalog
            ]
        )

    async def sagas(self, request: web.Request) -> web.Response:
        """Through the index when there is one: ``saga``/``name``, ``state``, ``since``,
        ``until`` (ISO 8601), ``where=k=v`` (repeatable), ``limit``, ``cursor``; the next
        page's cursor comes back in the ``Saga-Next-Cursor`` header."""
        state = request.query.get("state")
        if state is not None and state not in STATES:
            return _error(400, f"state must be one of {', '.join(STATES)}")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= 10_000:
            return _error(400, "limit must be between 1 and 10000")
        client = self._client()
        name = request.query.get("saga") or request.query.get("name")
        index = await client.index()
        if index is None:
            found: list[Any] = await client.states(state, name, limit)
            return web.json_response([_summary(s) for s in found])
        try:
            query = query_from(request.query, name, state, limit)
            page = await index.list(query)
        except ValueError as exc:
            return _error(400, str(exc))
        headers = {HEADER_NEXT_CURSOR: page.cursor} if page.cursor else None
        return web.json_response([_summary(s) for s in page.items], headers=headers)

    def _client(self) -> SagaClient:
        """Reads through the engine's own store (and its index)."""
        assert self.engine.store is not None
        return SagaClient(self.engine.nc, store=self.engine.store)

    async def saga(self, request: web.Request) -> web.Response:
        saga_id = request.match_info["saga_id"]
        record = await self._client().record(saga_id, request.query.get("name"))
        if record is None:
            return _error(404, f"no instance {saga_id!r}")
        body = json.loads(record.state.model_dump_json())
        body["trace_id"] = trace_id_of(record.trace)
        return web.json_response(body)

    async def action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in (*ACTIONS, EMIT):
            return _error(404, f"unknown action {action!r}")
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "body must be JSON")
            if not isinstance(body, dict):
                return _error(400, "body must be a JSON object")
        saga_id = request.match_info["saga_id"]
        try:
            wanted = ActionRequest.model_validate({**body, "action": action, "saga_id": saga_id})
        except ValidationError as exc:
            return _error(400, f"bad request: {exc.errors()[0]['msg']}")
        result = await self.engine.act(saga_id, wanted.name, wanted.event("http"), None)
        if not result.ok and result.status is None:
            return _error(404, result.message)
        return web.json_response(_dump(result.__dict__), status=200 if result.ok else 409)
