"""The ASGI layer in front of the study application: request bodies with a declared, small length only (a body
that is too large or of unknown length is refused before anything reads it), and protective headers on every
response (no caching, no referrer carrying a participant's link, no framing, scripts from this server only, no
file validators)."""

from __future__ import annotations

import json

BODY_METHODS = {"POST", "PUT", "PATCH"}
# a file's validators are the same under every trial's id for it: without them, two ids cannot be linked
DROPPED_HEADERS = {b"etag", b"last-modified"}
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


class RequestGuard:
    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] in BODY_METHODS:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None or b"chunked" in headers.get(b"transfer-encoding", b""):
                return await self._refuse(send, 411, "a request body needs a Content-Length")
            if not length.isdigit() or int(length) > self.max_body_bytes:
                return await self._refuse(send, 413, f"a request body is at most {self.max_body_bytes} bytes")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in DROPPED_HEADERS]
                names = {name.lower() for name, _ in kept}
                message = {**message, "headers": [*kept, *[(n, v) for n, v in SECURITY_HEADERS if n not in names]]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})
