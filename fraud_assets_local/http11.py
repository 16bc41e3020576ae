"""HTTP/1.1 keep-alive for the local stack's werkzeug servers (moto and the model server).

werkzeug's development server answers every request with `Connection: close`, then waits up to
10 ms for stray request bytes before it closes the socket. A day of scores is thousands of
DynamoDB and InvokeEndpoint calls: each paid a TCP connect, a new server thread and that wait
(accept and thread start were ~30% of moto's profile). This handler keeps the connection open
the way http.server's HTTP/1.1 support intends: it reads exactly the request's body (its
Content-Length, or its chunks), sends every response with a Content-Length or chunked, and drains
whatever body the application left unread, so the next request starts at a request line.
"""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

log = logging.getLogger(__name__)

_NO_BODY_STATUSES = frozenset({204, 304})
_DRAIN_CHUNK = 1024 * 1024


class KeepAliveMixin:
    """Put before a werkzeug `WSGIRequestHandler` subclass (moto's keeps its environ tweaks)."""

    protocol_version = "HTTP/1.1"
    # Status line, headers and a small body leave as one write, with Nagle off: sent apart, Nagle
    # and the client's delayed ACK would stall each keep-alive response by ~40 ms.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True

    def handle_expect_100(self: Any) -> bool:
        # wfile is buffered (wbufsize): without a flush the 100 Continue waits in the buffer and
        # botocore, which holds an S3 PUT's body until it sees one, stalls a full second per PUT.
        self.send_response_only(100)
        self.end_headers()
        self.wfile.flush()
        return True

    def run_wsgi(self: Any) -> None:
        # http.server's parse_request has answered `Expect: 100-continue` already, and set
        # close_connection from the request's version and Connection header.
        environ = self.environ = self.make_environ()
        if "wsgi.input_terminated" in environ:  # chunked: werkzeug's DechunkedInput ends at the last chunk
            body = environ["wsgi.input"]
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self.close_connection = True
                self.send_error(400, "bad Content-Length")
                return
            body = environ["wsgi.input"] = LimitedStream(self.rfile, length)
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info and response.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            response.update(status=status, headers=headers)
            return lambda data: write(data)  # the legacy write() callable

        def write(data: bytes) -> None:
            if not response.get("sent"):
                send_headers()
            if data:
                if response["chunked"]:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)

        def send_headers() -> None:
            code_text, _, reason = response["status"].partition(" ")
            code = int(code_text)
            self.send_response(code, reason)
            names = set()
            for name, value in response["headers"]:
                if name.lower() != "connection":
                    self.send_header(name, value)
                names.add(name.lower())
            bodiless = environ["REQUEST_METHOD"] == "HEAD" or code < 200 or code in _NO_BODY_STATUSES
            response["chunked"] = "content-length" not in names and not bodiless
            if response["chunked"]:
                self.send_header("Transfer-Encoding", "chunked")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            response["sent"] = True

        try:
            iterable = self.server.app(environ, start_response)
            try:
                for data in iterable:
                    write(data)
                if not response.get("sent"):
                    send_headers()
                if response["chunked"]:
                    self.wfile.write(b"0\r\n\r\n")
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
            self.wfile.flush()
            while body.read(_DRAIN_CHUNK):  # what the application did not read of the body
                pass
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            log.exception("error on request %r", self.requestline)
            if not response.get("sent"):  # else half a response is out: closing is all that is left
                self.send_error(500)


class KeepAliveRequestHandler(KeepAliveMixin, WSGIRequestHandler):
    pass
