"""Errors, and which of them a client retries.

The data path (Produce, Fetch, Subscribe, Metadata) answers problems inside the response, in an
``Error`` message with a code; Admin answers with a gRPC status whose ``sluice-error`` metadata
carries a stable code string. docs/PROTOCOL.md has the whole model.
"""

from __future__ import annotations

from typing import Optional

from sluice.v1 import data_pb2

E = data_pb2

#: Codes after which the same request, sent again (elsewhere or later), may succeed.
RETRIABLE = frozenset(
    {
        E.ERROR_CODE_NOT_LEADER,
        E.ERROR_CODE_BUSY,
        E.ERROR_CODE_UNAVAILABLE,
        # A topic created a moment ago may not be known to every broker yet.
        E.ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION,
    }
)


class SluiceError(Exception):
    """A request Sluice refused; ``code`` is the data path's ``ErrorCode`` name (e.g.
    ``"ERROR_CODE_BUSY"``) or Admin's code string (e.g. ``"TOPIC_EXISTS"``)."""

    def __init__(self, code: str, message: str, retry_after_ms: int = 0, leader_addr: Optional[str] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.leader_addr = leader_addr

    @staticmethod
    def from_pb(error) -> "SluiceError":
        return SluiceError(
            E.ErrorCode.Name(error.code) if error.code in E.ErrorCode.values() else str(error.code),
            error.message,
            error.retry_after_ms,
            error.leader_addr or None,
        )


class DeliveryTimeout(SluiceError):
    """A record was not acknowledged within the producer's delivery timeout: it may or may not
    have been appended."""

    def __init__(self, message: str):
        super().__init__("DELIVERY_TIMEOUT", message)


def failed(error) -> bool:
    """Whether a response's ``error`` field reports a failure."""
    return error is not None and error.code != E.ERROR_CODE_NONE
