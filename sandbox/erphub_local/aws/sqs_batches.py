"""SQS event-source delivery as AWS does it, for moto 5.2.5.

moto hands each new message to the queue's function at once, one record per invocation, with
``ApproximateReceiveCount`` always ``"1"``, and deletes every message of an invocation that did
not fail: it ignores ``batchItemFailures``, so a record a ``ReportBatchItemFailures`` function
reports as failed is silently deleted, which AWS never does. With :func:`install`:

* a delivery receives up to ``BatchSize`` visible messages and passes them in ONE event, with
  their real receive counts, until the queue has no visible message left;
* with ``ReportBatchItemFailures``, only the records not named in ``batchItemFailures`` are
  deleted (an unknown or empty ``itemIdentifier`` fails the whole batch, as on AWS); an
  invocation that fails deletes nothing. What is not deleted stays in flight until its
  visibility timeout, as on AWS;
* time does not pass here, so :func:`redeliver` plays "the visibility timeout has expired": the
  in-flight messages become visible and are delivered again. After ``maxReceiveCount``
  receives, moto moves a message to the dead-letter queue, as AWS does;
* messages a handler sends while a delivery is running are delivered by that same delivery
  loop once the handler returns (a poller picks them up), not inside the sending call;
* :func:`held` holds deliveries, so messages accumulate and are delivered in full batches when
  it ends;
* an S3 event reaches the queue's function once the object is complete: moto notifies from
  inside ``PutObject`` before it sets the object's metadata (AWS notifies afterwards), so a
  handler reading the object would see none.

``tests/integration/test_beqom_sqs_delivery.py`` shows each of these against moto, so an upgrade
tells whether the patch is still needed.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from moto.awslambda.utils import get_backend
from moto.s3.responses import S3Response
from moto.sqs.models import Queue, sqs_backends

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["held", "in_flight", "install", "installed", "redeliver", "uninstall"]

_DEFAULT_BATCH_SIZE = 10
_lock = threading.RLock()
_original_add_message: Any = None
_original_s3: dict[str, Any] = {}
#: S3 request handlers that create objects (and so send notifications).
_S3_WRITES = ("_key_response_put", "_key_response_post")
_pending: list[Queue] = []
_draining = False
_holds = 0


def install() -> None:
    """Deliver SQS event sources as described above (idempotent)."""
    global _original_add_message  # noqa: PLW0603 - one patch per process
    with _lock:
        if _original_add_message is None:
            _original_add_message = vars(Queue)["add_message"]
            setattr(Queue, "add_message", _add_message)  # noqa: B010
            for name in _S3_WRITES:
                _original_s3[name] = vars(S3Response)[name]
                setattr(S3Response, name, _delivered_after(_original_s3[name]))


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    with _lock:
        return _original_add_message is not None


def uninstall() -> None:
    """Give moto its own delivery back (idempotent)."""
    global _original_add_message  # noqa: PLW0603
    with _lock:
        if _original_add_message is not None:
            setattr(Queue, "add_message", _original_add_message)  # noqa: B010
            _original_add_message = None
            for name, original in _original_s3.items():
                setattr(S3Response, name, original)
            _original_s3.clear()
        _pending.clear()


def _add_message(self: Queue, message: Any) -> None:
    # moto's own add_message stores the message and then delivers it; keep the first half.
    mappings = self.lambda_event_source_mappings
    self.lambda_event_source_mappings = {}
    try:
        _original_add_message(self, message)
    finally:
        self.lambda_event_source_mappings = mappings
    if mappings:
        _schedule(self)


def _delivered_after(handler: Any) -> Any:
    """``handler`` with the queue deliveries it causes held until it has finished."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with held():
            return handler(*args, **kwargs)

    return wrapper


def _schedule(queue: Queue) -> None:
    """Deliver ``queue`` now, or let the delivery already running pick it up."""
    global _draining  # noqa: PLW0603
    with _lock:
        if queue not in _pending:
            _pending.append(queue)
        if _draining or _holds:
            return
        _draining = True
    try:
        while True:
            with _lock:
                if not _pending:
                    return
                current = _pending.pop(0)
            _deliver(current)
    finally:
        with _lock:
            _draining = False


@contextmanager
def held() -> Iterator[None]:
    """Hold deliveries while inside; deliver what accumulated, in full batches, at the end."""
    global _holds  # noqa: PLW0603
    with _lock:
        _holds += 1
    try:
        yield
    finally:
        with _lock:
            _holds -= 1
            queue = _pending[0] if _pending and not _holds else None
        if queue is not None:
            _schedule(queue)


def _queues() -> list[Queue]:
    return [
        queue
        for account in list(sqs_backends.values())
        for backend in list(account.values())
        for queue in list(backend.queues.values())
    ]


def _matches(queue: Queue, name: str | None) -> bool:
    """``name`` is None (every queue), the queue's name, its ARN or its URL."""
    return name is None or name in (queue.name, queue.queue_arn) or name.endswith(f"/{queue.name}")


def in_flight(queue: str | None = None) -> int:
    """How many messages are received but neither deleted nor visible again."""
    return sum(
        1 for q in _queues() if _matches(q, queue) for message in q._messages if not message.visible
    )


def redeliver(queue_name_or_arn: str | None = None) -> int:
    """Let the visibility timeout of every in-flight message expire, and deliver again.

    Returns how many messages became visible. Call it again for the next round.
    """
    woken: list[Queue] = []
    count = 0
    with _lock:
        for queue in _queues():
            if not _matches(queue, queue_name_or_arn):
                continue
            for message in queue._messages:
                if not message.visible:
                    message.change_visibility(0)
                    queue.pending_messages.discard(message)
                    count += 1
            if queue.lambda_event_source_mappings:
                woken.append(queue)
    for queue in woken:
        _schedule(queue)
    return count


def _deliver(queue: Queue) -> None:
    backend = sqs_backends[queue.account_id][queue.region]
    for mapping in list(queue.lambda_event_source_mappings.values()):
        if not mapping.enabled:
            continue
        while True:
            messages = backend.receive_message(
                queue.name,
                int(mapping.batch_size or _DEFAULT_BATCH_SIZE),
                0,
                int(getattr(queue, "visibility_timeout", 30)),
            )
            if not messages:
                break
            failed = _invoke(mapping, queue, messages)
            for message in messages:
                if message.id not in failed:
                    backend.delete_message(queue.name, str(message.receipt_handle))


def _record(message: Any, queue: Queue) -> dict[str, Any]:
    return {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.approximate_receive_count),
            "SentTimestamp": str(message.sent_timestamp),
            "SenderId": str(message.sender_id),
            "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
        },
        "messageAttributes": {},
        "md5OfBody": message.body_md5,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.queue_arn,
        "awsRegion": queue.region,
    }


def _invoke(mapping: Any, queue: Queue, messages: list[Any]) -> set[str]:
    """Invoke the function with one batch; the ids of the messages that failed."""
    ids = {message.id for message in messages}
    headers: dict[str, Any] = {}
    payload = get_backend(queue.account_id, queue.region).invoke(
        function_name=mapping.function_arn,
        qualifier=None,
        body=json.dumps({"Records": [_record(m, queue) for m in messages]}),
        headers={},
        response_headers=headers,
    )
    if "x-amz-function-error" in headers:
        return ids
    if "ReportBatchItemFailures" not in (mapping.function_response_types or []):
        return set()
    try:
        response = json.loads(payload or b"null")
    except ValueError:
        return ids
    if not isinstance(response, dict):
        return set()
    failures = response.get("batchItemFailures") or []
    failed = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
    if not failed <= ids:  # empty or unknown identifiers: AWS fails the whole batch
        return ids
    return {str(item) for item in failed}
