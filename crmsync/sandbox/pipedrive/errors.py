"""Errors the fake Pipedrive raises while handling a request.

Each carries the HTTP status and the message Pipedrive would put in its error body; the WSGI app turns
them into the documented envelope ``{"success": false, "error", "error_info", "data", "additional_data"}``.
"""
from __future__ import annotations

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


class PipedriveSandboxError(Exception):
    """Base of everything the Pipedrive sandbox raises on purpose."""


class ApiError(PipedriveSandboxError):
    """A request the real API would refuse; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.body = body  # a full replacement body, for the few errors that deviate from the envelope

    def to_body(self) -> dict:
        if self.body is not None:
            return self.body
        return {"success": False, "error": self.message, "error_info": ERROR_INFO,
                "data": None, "additional_data": None}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str = "unauthorized access"):
        # Body as observed on the live API (see docs/pipedrive.md §2.1): it carries errorCode, no data keys.
        super().__init__(message, body={"success": False, "error": message, "errorCode": 401,
                                        "error_info": "Please check developers.pipedrive.com"})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Unprocessable(ApiError):
    status = 422


class RateLimited(ApiError):
    status = 429

    def __init__(self, message: str, headers: dict):
        super().__init__(message, headers=headers,
                         body={"success": False, "error": message, "errorCode": 429,
                               "error_info": "Please check developers.pipedrive.com"})


class UnknownEntity(PipedriveSandboxError, KeyError):
    """An admin or generator call named an entity type the sandbox does not model."""
