"""Errors as JSON in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``.

``param`` names the request field at fault (``input``, ``model``, ...), so a
client can tell which part of its request to fix.
"""

from __future__ import annotations

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request the server answers with an error status and a JSON error naming the field."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response for this error."""
        return error_response(self.status, self.message, self.param, self.code, self.headers)


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error response; ``type`` is ``invalid_request_error`` for 4xx, ``server_error`` otherwise."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    """FastAPI exception handler for :class:`ApiError`."""
    return exc.response()


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    """The framework's own errors (``404`` no such path, ``405`` wrong method) in the same JSON shape."""
    if exc.status_code == 404:
        message, code = f"no endpoint {request.url.path}; see GET /v1/models and POST /v1/audio/speech", "not_found"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("allow", "")
        message, code = f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}", "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    return error_response(exc.status_code, message, None, code, dict(exc.headers or {}))


def _is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, parameters (``; charset=utf-8``) aside."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request body that does not fit the schema: ``422`` naming the first field at fault.

    The message lists every problem (``field: what is wrong``); a body that
    is not JSON at all names ``body``. A body sent with a content type that is
    not JSON (curl's ``-d`` sends a form type) is ``415`` naming that type.
    """
    content_type = request.headers.get("content-type")
    if content_type and not _is_json(content_type):
        message = f"Content-Type '{content_type}' is not JSON: send the body as application/json"
        return error_response(415, message, "content-type", "unsupported_media_type")
    problems = []
    for err in jsonable_encoder(exc.errors()):
        if err.get("type") == "json_invalid":  # its loc is a character offset, not a field
            problems.append(("body", f"is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})"))
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        problems.append((".".join(loc) or "body", err.get("msg", "invalid")))
    param = problems[0][0] if problems else "body"
    message = "; ".join(f"{field}: {msg}" for field, msg in problems) or "invalid request body"
    return error_response(422, message, param, "invalid_value")
