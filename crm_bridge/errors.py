"""The CRM's errors: what an operation refuses, with the HTTP status it maps to.

``extra`` holds structured fields the answer carries beside the message (a duplicate's
``candidates``, the configured ``dispositions``)."""

from __future__ import annotations

from typing import Any

__all__ = ["Conflict", "CrmError", "DuplicateError", "Forbidden", "NotFound"]


class CrmError(Exception):
    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotFound(CrmError):
    status = 404


class Forbidden(CrmError):
    status = 403


class Conflict(CrmError):
    status = 409


class DuplicateError(Conflict):
    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        super().__init__("possible duplicate of existing customers", candidates=candidates)
        self.candidates = candidates
