"""AsyncAPI 3.0 documents of sagas: :func:`asyncapi_document` builds one, :func:`to_yaml`
writes it out (``saga asyncapi`` and the console's definitions page call them)."""

from saga.asyncapi.document import DEFAULT_SERVER, asyncapi_document, to_yaml

__all__ = ["DEFAULT_SERVER", "asyncapi_document", "to_yaml"]
