"""The package's exceptions."""

from __future__ import annotations

from ._native import FuseflowError


class TranslationError(FuseflowError):
    """A model that cannot be translated (dynamic shapes, a bad `formats=` entry, ...). The
    message names the op and the model's source line where there is one."""


class UnsupportedOpError(TranslationError, NotImplementedError):
    """An op (or an op on an operand, e.g. a sparse one) that FuseFlow cannot lower; the message
    names the op and the model's source line."""


class NotYetAvailableError(FuseflowError, NotImplementedError):
    """An option of a feature still being built (none at present; kept so callers can catch it)."""


__all__ = ["FuseflowError", "TranslationError", "UnsupportedOpError", "NotYetAvailableError"]
