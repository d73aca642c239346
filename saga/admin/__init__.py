"""The engine's admin HTTP API: health, readiness, metrics, instances, operator actions."""

from saga.admin.server import AdminServer, AdminSettings, parse_address

__all__ = ["AdminServer", "AdminSettings", "parse_address"]
