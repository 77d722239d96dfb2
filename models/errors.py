"""Errors raised by models and the registry."""


class ModelError(Exception):
    """Base class of the models package's errors."""


class ModelFitError(ModelError):
    """A fit produced unusable factors (NaN or inf)."""


class ModelNotFoundError(ModelError):
    """No artifact exists for the asked version."""
