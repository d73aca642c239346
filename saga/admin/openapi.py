"""The OpenAPI 3.1 document of the admin API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

_ID = {"name": "saga_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {
    "name": "name",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Saga name, when two sagas share an id.",
}
_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _action(
    verb: str, text: str, fields: dict[str, Any] | None = None, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "post": {
            "summary": text,
            "operationId": f"{verb}Saga",
            "parameters": [_ID],
            "requestBody": {
                "required": bool(required),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "reason": {"type": "string", "maxLength": 1000},
                                "actor": {"type": "string", "maxLength": 200},
                                **(fields or {}),
                            },
                            **({"required": list(required)} if required else {}),
                        }
                    }
                },
            },
            "responses": {
                "200": _json("Applied", {"$ref": "#/components/schemas/ActionResult"}),
                "404": _ERROR,
                "409": _json(
                    "Refused in the instance's state", {"$ref": "#/components/schemas/ActionResult"}
                ),
                "401": _ERROR,
            },
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "saga engine admin API", "version": "1"},
    "paths": {
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "operationId": "healthz",
                "responses": {"200": _json("Alive", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Connected, streams and bucket provisioned, consumers bound",
                "operationId": "readyz",
                "responses": {
                    "200": _json("Ready", {"type": "object"}),
                    "503": _json("Not ready", {"type": "object"}),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "Prometheus text format", "content": {"text/plain": {}}}
                },
            }
        },
        "/definitions": {
            "get": {
                "summary": "Loaded saga definitions",
                "operationId": "listDefinitions",
                "responses": {"200": _json("Definitions", {"type": "array"}), "401": _ERROR},
            }
        },
        "/sagas": {
            "get": {
                "summary": "Instances, newest first",
                "operationId": "listSagas",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "running",
                                "compensating",
                                "completed",
                                "compensated",
                                "parked",
                                "terminated",
                            ],
                        },
                    },
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                    {"name": "saga", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "description": "Entered their status at or after (ISO 8601)",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "where",
                        "in": "query",
                        "description": "NAME=VALUE of a search attribute (repeatable)",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "style": "form",
                        "explode": True,
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "The Saga-Next-Cursor header of the previous page",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10000,
                            "default": 100,
                        },
                    },
                ],
                "responses": {
                    "200": _json(
                        "Instances",
                        {"type": "array", "items": {"$ref": "#/components/schemas/Summary"}},
                    ),
                    "400": _ERROR,
                    "401": _ERROR,
                },
            }
        },
        "/sagas/{saga_id}": {
            "get": {
                "summary": "One instance: state, steps and history",
                "operationId": "getSaga",
                "parameters": [_ID, _NAME],
                "responses": {
                    "200": _json("Instance", {"type": "object"}),
                    "404": _ERROR,
                    "401": _ERROR,
                },
            }
        },
        "/sagas/{saga_id}/abort": _action("abort", "Compensate a running saga now"),
        "/sagas/{saga_id}/retry": _action("retry", "Re-drive a parked compensation or the step"),
        "/sagas/{saga_id}/resume": _action("resume", "Mark a parked compensation done by hand"),
        "/sagas/{saga_id}/terminate": _action(
            "terminate", "End a running, compensating or parked saga without compensating"
        ),
        "/sagas/{saga_id}/redrive": _action(
            "redrive", "Run a compensated, parked or terminated saga again from its failed step"
        ),
        "/sagas/{saga_id}/emit": _action(
            "emit",
            "Deliver an event to an observed step (e.g. a manual approval)",
            {
                "data": {"type": "object", "description": "The event's payload."},
                "subject": {
                    "type": "string",
                    "description": "A success or failure subject of an observed step.",
                },
            },
            required=("subject",),
        ),
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "ActionResult": {
                "type": "object",
                "required": ["ok", "message"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "message": {"type": "string"},
                    "status": {"type": ["string", "null"]},
                },
            },
            "Summary": {
                "type": "object",
                "properties": {
                    "saga_id": {"type": "string"},
                    "saga_name": {"type": "string"},
                    "saga_version": {"type": "integer"},
                    "status": {"type": "string"},
                    "started_at": {"type": "string"},
                    "finished_at": {"type": ["string", "null"]},
                },
            },
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{}, {"bearer": []}],
}
