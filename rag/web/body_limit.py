"""A cap on request bodies: an ASGI middleware in front of the whole app (page events, the Gradio API, /api/ask).

Gradio reads a request's whole JSON body before any of the app's own checks run, so a question or history of
hundreds of megabytes would be read into memory first. A body (declared or streamed in chunks) over ``limit``
bytes is answered 413 without reaching the app; file uploads are left to Gradio's own ``max_file_size``. Written
by hand: Starlette and Gradio have no body-size limit of their own. Starlette only, no Gradio.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

UPLOAD_SUFFIX = "/upload"  # Gradio's file upload route, limited per file by its max_file_size


class BodyLimit:
    """The middleware (``starlette.middleware.Middleware(BodyLimit, limit=1_000_000)``)."""

    def __init__(self, app, limit: int = 1_000_000):
        self.app = app
        self.limit = limit

    def _too_large(self) -> JSONResponse:
        message = f"the request body is larger than {self.limit:,} bytes"
        return JSONResponse({"error": message, "detail": message}, status_code=413)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH") or \
                path.rstrip("/").endswith(UPLOAD_SUFFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:  # refused before it is read
            await self._too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:  # read at most limit + one chunk, then replay it to the app
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._too_large()(scope, receive, send)
                return
        await self.app(scope, _replay(chunks, None, receive), send)


def _replay(chunks: list[bytes], pending, receive):
    """A ``receive`` that first gives the body already read (as one message), then whatever comes next."""
    sent = False

    async def replayed():
        nonlocal sent, pending
        if not sent:
            sent = True
            if pending is None:
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replayed
