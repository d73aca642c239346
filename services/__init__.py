"""Example participant services for the sagas in ``definitions/``.

Each module holds one ``App`` named after the service; see ``services/README.md``
for their subjects and the deterministic business rules that make them fail.
"""
