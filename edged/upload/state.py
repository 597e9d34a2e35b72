"""The state machine of one file's upload: pure, no I/O."""

from __future__ import annotations

from enum import StrEnum

from edged.errors import EdgedError


class FileState(StrEnum):
    QUEUED = "queued"
    UPLOADING = "uploading"
    COMPLETING = "completing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


class UploadEvent(StrEnum):
    START = "start"  # parts begin to go up (a new or a resumed multipart upload)
    PARTS_SENT = "parts_sent"  # every part acknowledged by the server
    COMPLETED = "completed"  # the server assembled the object
    VERIFIED = "verified"  # ETag, size and sha256 match what the journal holds
    RETRYABLE_ERROR = "retryable_error"  # try again later from where it stopped
    UPLOAD_LOST = "upload_lost"  # the server forgot the upload id: start the file over
    FATAL_ERROR = "fatal_error"  # the source cannot be uploaded as queued
    RETRY = "retry"  # an operator asked to try a failed file again


class InvalidTransition(EdgedError):
    """An event that the current state does not allow."""


IN_FLIGHT = (FileState.UPLOADING, FileState.COMPLETING, FileState.VERIFYING)
PENDING = (FileState.QUEUED, *IN_FLIGHT)

TRANSITIONS: dict[tuple[FileState, UploadEvent], FileState] = {
    (FileState.QUEUED, UploadEvent.START): FileState.UPLOADING,
    (FileState.UPLOADING, UploadEvent.PARTS_SENT): FileState.COMPLETING,
    (FileState.COMPLETING, UploadEvent.COMPLETED): FileState.VERIFYING,
    (FileState.VERIFYING, UploadEvent.VERIFIED): FileState.DONE,
    (FileState.FAILED, UploadEvent.RETRY): FileState.QUEUED,
    **{(state, UploadEvent.RETRYABLE_ERROR): state for state in IN_FLIGHT},
    **{(state, UploadEvent.UPLOAD_LOST): FileState.QUEUED for state in IN_FLIGHT},
    **{(state, UploadEvent.FATAL_ERROR): FileState.FAILED for state in PENDING},
}


def next_state(current: FileState, event: UploadEvent) -> FileState:
    """The state after `event`; raises InvalidTransition for an event the state does not allow.

    A retryable error keeps the state: the work done so far (upload id, acknowledged parts) stays
    valid and the next attempt continues from it.
    """
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidTransition(f"upload event {event} is not allowed in state {current}") from None
