"""``python -m services.NAME [--nats URL]``: the one argument parser every service shares."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from saga.nats.connection import URL_ENV
from saga.participant import App, run_app


def main(app: App, argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{app.name}", description=f"Run the {app.name} participant."
    )
    parser.add_argument("--nats", metavar="URL", help=f"server URL (default: ${URL_ENV})")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--health",
        metavar="HOST:PORT",
        help="serve /healthz and /readyz (default: $SAGA_HEALTH_ADDR)",
    )
    args = parser.parse_args(argv)
    run_app(app, args.nats, args.log_level, args.health)
