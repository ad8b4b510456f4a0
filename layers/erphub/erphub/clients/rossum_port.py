"""The Rossum port: what the Rossum export flow needs from Rossum.

Apart from the adapter (:mod:`erphub.clients.rossum`, on the Rossum SDK), so that the steps which
do not talk to Rossum (push, schedule) do not load the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from erphub.errors import ErphubError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

MAX_IDS_PER_EXPORT = 100


class RossumError(ErphubError):
    """Rossum refused a request for a reason retrying will not fix."""


@dataclass(frozen=True)
class AnnotationState:
    """Where an annotation stands in Rossum, and the error messages an operator sees on it."""

    status: str
    errors: tuple[str, ...] = ()


class RossumPort(Protocol):
    """What the Rossum export flow needs from Rossum."""

    def confirmed_annotations(self, queue_id: int) -> Iterator[dict[str, Any]]:
        """Every confirmed annotation of the queue, as export JSON results, page by page."""
        ...

    def mark_exported(self, queue_id: int, annotation_ids: Sequence[int]) -> dict[int, str]:
        """Move exactly these (at most 100) annotations to ``exported``; their statuses after."""
        ...

    def mark_failed_export(self, annotation_id: int, message: str) -> None:
        """Move one annotation to ``failed_export`` with ``message`` for the operator."""
        ...

    def annotation_states(self, annotation_ids: Sequence[int]) -> dict[int, AnnotationState]:
        """The current status (and error messages) of these annotations; absent if unknown."""
        ...
