"""RFC 9457 problem details: every error any service returns, with a stable `type` per error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from mfaplane_contracts.endpoints import Problem
from mfaplane_contracts.text import CONTROL_CHARACTERS
from mfaplane_eventing import db
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.event_store import ConcurrencyConflict

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = "2"
RETRY_STATUSES = (429, 503)
# The one place a refusal's kind meets HTTP.
REFUSAL_STATUSES = {
    Refusal.INVALID: 400, Refusal.UNAUTHENTICATED: 401, Refusal.FORBIDDEN: 403, Refusal.NOT_FOUND: 404,
    Refusal.CONFLICT: 409, Refusal.UNSUPPORTED_MEDIA_TYPE: 415, Refusal.UNPROCESSABLE: 422, Refusal.LOCKED: 423,
    Refusal.THROTTLED: 429, Refusal.NOT_READY: 503,
}
_REFUSALS_BY_STATUS = {status: kind for kind, status in REFUSAL_STATUSES.items()}


class ServiceUnavailable(Exception):
    """A service this one calls cannot answer now (unreachable, failing, refusing this service's own
    credentials): no refusal of the request, which may be sent again. Answered 503 at the edge."""

    code = "service_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnreadableAnswer(Exception):
    """A service answered a call with what this one cannot read (a release it does not know, during a
    rolling upgrade). Unlike an outage, the call may have been applied: answered 502, not "retry"."""

    code = "unreadable_answer"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "The request was refused", "model": Problem,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    "5XX": {"description": "A service is unavailable; retry after Retry-After seconds", "model": Problem,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}


def problem_type(code: str) -> str:
    return f"urn:mfaplane:problem:{code}"


def problem_body(status: int, code: str, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {"type": problem_type(code), "title": title, "status": status, "detail": detail, "code": code,
            **extensions}


def problem(status: int, code: str, title: str, detail: str, headers: Mapping[str, str] | None = None,
            **extensions: Any) -> JSONResponse:
    return _response(problem_body(status, code, title, detail, **extensions), headers)


def refusal_kind(status: int) -> Refusal:
    """The kind of refusal a problem another service answered with `status` reports; INVALID for a 4xx no
    kind has (405, 413: the calling code's own request was wrong)."""
    return _REFUSALS_BY_STATUS.get(status, Refusal.INVALID)


def rejected_body(error: Rejected) -> dict[str, Any]:
    return problem_body(REFUSAL_STATUSES[error.kind], error.code, error.code.replace("_", " ").capitalize(),
                        error.detail, **error.extra)


def conflict_body() -> dict[str, Any]:
    return problem_body(409, "concurrent_modification", "Concurrent modification",
                        "Another change to the same record was saved first; retry.")


def _response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=MEDIA_TYPE,
                        headers=with_retry_after(body["status"], headers, body.get("retry_after")))


def with_retry_after(status: int, headers: Mapping[str, str] | None,
                     retry_after: Any = None) -> Mapping[str, str] | None:
    """Every 429 and 503 says when to come back where HTTP clients look: Retry-After, the body's
    `retry_after` when it has one, else RETRY_AFTER_SECONDS."""
    if status not in RETRY_STATUSES or "retry-after" in {name.lower() for name in headers or {}}:
        return headers
    return {**(headers or {}), "Retry-After": str(retry_after if retry_after is not None else RETRY_AFTER_SECONDS)}


async def _rejected(_: Request, error: Rejected) -> JSONResponse:
    return _response(rejected_body(error))


async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = _located(list(error.errors()))
    if all(e["type"] == CONTROL_CHARACTERS for e in errors):
        return problem(400, "invalid_text", "Invalid text",
                       "Names and search terms must not contain control characters or line breaks.", errors=errors)
    return problem(422, "validation_error", "Invalid request", "The request does not match the schema.",
                   errors=errors)


def _located(errors: list[Any]) -> list[dict[str, Any]]:
    """Where and why a value was refused, never the value: it may be a password, a code or a key."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


async def _model_invalid(_: Request, error: ValidationError) -> JSONResponse:
    """A model a route built from what the client sent (a call on to another service) refused it."""
    return problem(422, "validation_error", "Invalid request", "The request does not match the schema.",
                   errors=_located(error.errors()))


async def _unreadable(_: Request, error: UnreadableAnswer) -> JSONResponse:
    return problem(502, error.code, "Bad gateway", error.detail)


async def _http(_: Request, error: HTTPException) -> JSONResponse:
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            413: "request_too_large"}.get(error.status_code, "http_error")
    return problem(error.status_code, code, str(error.detail), str(error.detail), headers=error.headers)


async def _conflict(_: Request, error: ConcurrencyConflict) -> JSONResponse:
    return _response(conflict_body())


async def _unstorable_text(_: Request, error: asyncpg.DataError) -> JSONResponse:
    return problem(422, "unstorable_text", "Invalid text",
                   "Text may not contain NUL characters or code points the database cannot store.")


async def _database_down(_: Request, error: Exception) -> JSONResponse:
    return problem(503, ServiceUnavailable.code, "Service unavailable", "The database is not reachable; retry.")


async def _unavailable(_: Request, error: ServiceUnavailable) -> JSONResponse:
    return problem(503, error.code, "Service unavailable", error.detail)


def install(app: FastAPI) -> None:
    # the decorator form: add_exception_handler's type takes only handlers of any Exception
    app.exception_handler(Rejected)(_rejected)
    app.exception_handler(ServiceUnavailable)(_unavailable)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(ValidationError)(_model_invalid)
    app.exception_handler(UnreadableAnswer)(_unreadable)
    app.exception_handler(HTTPException)(_http)
    app.exception_handler(ConcurrencyConflict)(_conflict)
    for error in (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        app.add_exception_handler(error, _unstorable_text)
    for error in (*db.DATABASE_AWAY, asyncpg.InterfaceError):
        app.add_exception_handler(error, _database_down)
