"""The web console: server-rendered pages of the admin server, at ``/console/``."""

from saga.console.app import ConsoleSettings, console_app, is_console_path, mount_console

__all__ = ["ConsoleSettings", "console_app", "is_console_path", "mount_console"]
