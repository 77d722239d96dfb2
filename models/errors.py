"""Errors raised by models and the registry."""


class ModelError(Exception):
    """Base class of the models package's errors."""


class ModelFitError(ModelError):
    """A fit produced unusable factors (NaN or inf)."""


class ModelNotFoundError(ModelError):
    """No artifact exists for the asked version."""


class CorruptModelError(ModelNotFoundError):
    """The version's artifact is there but is not what was saved (its checksum differs, or it
    cannot be read): a truncated copy, a disk error. A subclass of `ModelNotFoundError`, so that
    every reader that passes over a missing version passes over a damaged one too."""
