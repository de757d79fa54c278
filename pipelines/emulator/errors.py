"""Braket's error codes and the HTTP status each one travels with (braket-api.md)."""

from __future__ import annotations

HTTP_STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "DeviceRetiredException": 410,
    "DeviceOfflineException": 424,
    "ThrottlingException": 429,
    "InternalServiceException": 500,
}


class BraketError(Exception):
    """An error the emulator answers with, in Braket's own code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = HTTP_STATUS[code]


def validation(message: str) -> BraketError:
    return BraketError("ValidationException", message)


def not_found(message: str) -> BraketError:
    return BraketError("ResourceNotFoundException", message)
