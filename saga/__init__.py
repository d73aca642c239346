"""A choreography saga engine for NATS JetStream."""

__version__ = "0.1.0"
