"""Errors a user can cause, each carrying the HTTP status and one sentence saying what to change.

Every layer raises these; the API turns them into a response. Anything else reaching the client is a bug.
"""


class TiffinError(Exception):
    """A user-facing error: `message` is a sentence that tells the user what to change."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(TiffinError):
    status_code = 400


class Unauthorized(TiffinError):
    status_code = 401


class Forbidden(TiffinError):
    status_code = 403


class NotFound(TiffinError):
    status_code = 404


class Conflict(TiffinError):
    status_code = 409


class PayloadTooLarge(TiffinError):
    status_code = 413


class NotImplementedYet(TiffinError):
    status_code = 501
