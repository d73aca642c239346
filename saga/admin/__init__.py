"""The engine's admin HTTP API: health, readiness, metrics, instances, operator actions."""

from saga.address import AdminSettings, parse_address
from saga.admin.server import AdminServer

__all__ = ["AdminServer", "AdminSettings", "parse_address"]
