"""Exceptions raised by attnscope.

Every error derives from :class:`AttnscopeError` and also from the builtin that fits, so
``except ValueError`` keeps working. Each message says what came, what was expected and how to fix it.

    AttnscopeError
    ├── InputError (ValueError)          bad text, options or shapes handed to a public function
    │   └── InputTooLongError            more tokens than the model has positions
    ├── TraceFormatError (ValueError)    a file that is not a readable attnscope trace
    ├── ModelLoadError (OSError)         a model that cannot be found or loaded (offline hub, bad path)
    ├── CaptureError (RuntimeError)      the forward pass did not yield the attention it should
    ├── MissingDataError (LookupError)   the trace lacks what was asked for (q/k vectors, a kind, a segment)
    └── MissingExtraError (ImportError)  an optional package is not installed; names the pip command
"""

from __future__ import annotations


class AttnscopeError(Exception):
    """Base class of every attnscope error."""


class InputError(AttnscopeError, ValueError):
    """Bad text, option or array handed to a public function."""


class InputTooLongError(InputError):
    """The tokenized input has more tokens than the model can take."""


class TraceFormatError(AttnscopeError, ValueError):
    """A file is not a readable attnscope trace (truncated, corrupted, foreign or from a newer version)."""


class ModelLoadError(AttnscopeError, OSError):
    """A model or tokenizer could not be loaded."""


class CaptureError(AttnscopeError, RuntimeError):
    """The forward pass did not give the attention weights it should have."""


class MissingDataError(AttnscopeError, LookupError):
    """The trace does not hold what was asked for."""


class MissingExtraError(AttnscopeError, ImportError):
    """An optional dependency is missing."""


def require(module: str, extra: str):
    """Import an optional dependency or raise :class:`MissingExtraError` naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is not installed; it is needed here. Install it with: pip install 'attnscope[{extra}]'"
        ) from exc
