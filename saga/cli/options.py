"""What every command shares: the NATS connection options and running an async command."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click
from nats.errors import NoServersError

from saga.cli.config import NATS_SETTINGS, RunConfig, option_of
from saga.client import SagaClient
from saga.errors import DefinitionError, SagaError
from saga.nats.connection import NatsSettings, connect

F = TypeVar("F", bound=Callable[..., Any])


def setting_options(names: Iterable[str]) -> Callable[[F], F]:
    """The click options of these ``saga run`` settings, made from their declaration
    (:class:`saga.cli.config.Option`); each option's value arrives under the setting's name."""

    def decorate(func: F) -> F:
        for name in reversed(tuple(names)):
            option = option_of(name)
            default = RunConfig.model_fields[name].default
            func = click.option(
                option.flag,
                name,
                envvar=option.env,
                default=default,
                show_default=default is not None,
                type=option.type,
                help=option.help,
            )(func)
        return func

    return decorate


nats_options = setting_options(NATS_SETTINGS)
"""The connection options shared by every command that talks to NATS."""


def nats_settings(kwargs: dict[str, Any], name: str, discover: bool = True) -> NatsSettings | None:
    """Pop the connection options; ``None`` when no URL was given and discovery is off."""
    from saga.engine.process import discover_url

    values = {str(option_of(key).nats): kwargs.pop(key) for key in NATS_SETTINGS}
    url = values.pop("url")
    if url is None and not discover:
        return None
    fields = {k: v for k, v in values.items() if v is not None}
    if name == "saga-cli":
        fields.update(max_reconnect_attempts=2, connect_timeout=2.0, initial_connect_timeout=6.0)
    return NatsSettings(url=discover_url(url), name=name, **fields)


def cli_settings(kwargs: dict[str, Any]) -> NatsSettings:
    """The connection of a short-lived command (gives up quickly when NATS is away)."""
    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    return settings


def run_async(
    func: Callable[..., Coroutine[Any, Any, Any]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> Callable[..., Any]:
    """Run an async command (on ``loop_factory``'s event loop when given); our own errors
    are printed plainly, not as tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(func(*args, **kwargs))
        except SagaError as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, TimeoutError, NoServersError) as exc:
            raise click.ClickException(f"cannot reach NATS: {exc}") from None

    return wrapper


def print_problems(exc: DefinitionError) -> None:
    """A definition's problems in red on stderr, one a line."""
    for problem in exc.problems:
        click.echo(click.style(str(problem), fg="red"), err=True)


@asynccontextmanager
async def connected(settings: NatsSettings) -> AsyncIterator[SagaClient]:
    """A client on a connection of its own, closed on the way out."""
    nc = await connect(settings)
    try:
        yield SagaClient(nc)
    finally:
        await nc.close()
