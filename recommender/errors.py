"""The root of every error the core raises; the API translates these to HTTP at its edge."""


class StreamrecError(Exception):
    """Base class of streamrec's own errors."""


class ConfigurationError(StreamrecError):
    """A setting is missing or unsafe; raised at start-up, never at the first request."""


class InvalidRecordError(StreamrecError):
    """An event or content record does not satisfy its schema."""
