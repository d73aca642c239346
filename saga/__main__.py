"""``python -m saga`` is the ``saga`` command."""

from saga.cli import main

main()
