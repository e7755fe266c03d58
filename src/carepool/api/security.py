"""Guards every response and request share: security headers, no caching of answers that may
hold patient data, a request-size limit, and the bearer scheme declared in the OpenAPI.

A plain ASGI middleware (not Starlette's `BaseHTTPMiddleware`, which copies every response
through a stream): a request costs one header-list extension.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "declare_bearer_scheme"]

# Headers on every answer. Pages and API answers are never framed, sniffed or sent on as a
# referrer; answers of the API and FHIR (which may carry patient data) are never stored by a
# browser or proxy. Static assets (fonts, styles) may be cached.
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_PAGE = [(b"content-security-policy", b"frame-ancestors 'none'; object-src 'none'")]


class SecurityHeaders:
    """Adds the headers above and refuses request bodies over `max_body_bytes` with 413."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = list(_COMMON)
        if path.startswith(("/api/", "/fhir")):
            extra += _NO_STORE
        elif not path.startswith("/static/"):
            extra += _PAGE
        if "\x00" in path or b"%00" in scope.get("query_string", b"").lower():
            await _refuse(send, extra, path, 400, "bad-request", "the URL contains a NUL byte")
            return
        limit = self.max_body_bytes
        json_body = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await _too_large(send, extra, limit, path)
                    return
            elif name == b"content-type":
                json_body = b"json" in value.lower()

        received = 0
        started = False
        tail = b""

        async def limited_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise _BodyTooLarge
                if json_body:
                    # NUL in a JSON string: PostgreSQL cannot store it and SQLite would, so
                    # both refuse it here (the escape may straddle two chunks)
                    seen = tail + chunk
                    if b"\x00" in seen or b"\\u0000" in seen:
                        raise _NulInBody
                    tail = seen[-5:]
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _v in headers}
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, extra, limit, path)
        except _NulInBody:
            if not started:
                detail = "the JSON body contains a NUL character (\\u0000), which is not stored"
                await _refuse(send, extra, path, 400, "bad-request", detail)


class _BodyTooLarge(Exception):
    pass


class _NulInBody(Exception):
    pass


async def _too_large(send: Send, extra: list[tuple[bytes, bytes]], limit: int, path: str) -> None:
    detail = f"the request body is larger than {limit} bytes (CAREPOOL_MAX_REQUEST_BYTES)"
    await _refuse(send, extra, path, 413, "too-large", detail)


_TITLES = {400: ("Bad request", "invalid"), 413: ("Request too large", "too-costly")}


async def _refuse(
    send: Send, extra: list[tuple[bytes, bytes]], path: str, status: int, code: str, detail: str
) -> None:
    """An answer made here, before any route ran: a problem document (FHIR: OperationOutcome)."""
    title, fhir_code = _TITLES[status]
    if path.startswith("/fhir"):
        body: dict[str, Any] = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": fhir_code, "diagnostics": detail}],
        }
        media = b"application/fhir+json"
    else:
        body = {
            "type": f"/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
        }
        media = b"application/problem+json"
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


_PUBLIC = {"/health", "/fhir/metadata", "/fhir/.well-known/smart-configuration"}


def declare_bearer_scheme(app: FastAPI) -> None:
    """The OpenAPI names the bearer scheme and which operations need it (all but the public
    ones: health, FHIR metadata, the pages)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `carepool auth token --user NAME` "
                "(stored only as a hash; revoke with `carepool auth revoke`).",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            if path in _PUBLIC or not path.startswith(("/api/", "/fhir")):
                continue
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
