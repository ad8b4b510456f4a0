"""The error types of erphub.

Step Functions ``Retry`` and ``Catch`` match on the class name that Lambda reports as
``errorType``, so these names are part of the state machines' contract: rename with care.
"""

from __future__ import annotations


class ErphubError(Exception):
    """Base class of every error erphub raises on purpose."""


class TransientError(ErphubError):
    """A dependency failed in a way that may pass (timeout, 5xx, throttling): retry later."""


class ConfigurationError(ErphubError):
    """A setting, a secret or a credential is wrong: retrying will not help, an operator must."""


class BadInputError(ErphubError):
    """One input (a file, a document) cannot be processed; it fails alone, with this reason."""


class LeaseLostError(ErphubError):
    """Another run has taken over a document whose lease expired; this run must leave it alone."""
