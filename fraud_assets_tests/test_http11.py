"""HTTP/1.1 keep-alive on the local stack's servers: many requests on one connection, whatever
each request's body and each response's framing."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from fraud_assets_local.http11 import KeepAliveRequestHandler


@Request.application
def app(request: Request) -> Response:
    if request.path == "/ignore-body":  # answers without reading the body: the server must drain it
        return Response(b"ignored", content_type="text/plain")
    if request.path == "/stream":  # no Content-Length: sent chunked
        return Response(iter([b"a" * 10, b"", b"b" * 70_000]), content_type="text/plain")
    if request.path == "/boom":
        raise RuntimeError("a bug in the application")
    body = request.get_data()
    return Response(
        json.dumps({"method": request.method, "length": len(body), "tail": body[-5:].decode()}), content_type="application/json"
    )


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAliveRequestHandler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield "127.0.0.1", srv.server_port
    srv.shutdown()
    thread.join(timeout=5)


def test_one_connection_serves_every_kind_of_request(server):
    conn = http.client.HTTPConnection(*server, timeout=10)
    sockets = set()

    def call(method: str, path: str, body=None, headers=None) -> http.client.HTTPResponse:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        sockets.add(id(conn.sock))
        assert response.getheader("Connection") != "close"
        return response

    assert json.loads(call("POST", "/echo", b"x" * 3_000_000 + b"12345").read()) == {"method": "POST", "length": 3_000_005, "tail": "12345"}
    assert call("POST", "/ignore-body", b"y" * 500_000).read() == b"ignored"
    chunked = call("POST", "/echo", iter([b"abc", b"de" * 1000, b"fghij"]))  # http.client sends it chunked
    assert json.loads(chunked.read()) == {"method": "POST", "length": 2008, "tail": "fghij"}
    streamed = call("GET", "/stream")
    assert streamed.getheader("Transfer-Encoding") == "chunked"
    assert streamed.read() == b"a" * 10 + b"b" * 70_000
    head = call("HEAD", "/echo")
    assert head.read() == b"" and int(head.getheader("Content-Length")) > 0
    assert json.loads(call("GET", "/echo").read())["length"] == 0
    assert sockets == {id(conn.sock)} and conn.sock is not None  # never reconnected
    conn.close()


def test_an_application_error_answers_500_and_closes(server):
    conn = http.client.HTTPConnection(*server, timeout=10)
    conn.request("GET", "/boom")
    response = conn.getresponse()
    assert response.status == 500 and response.getheader("Connection") == "close"
    response.read()
    conn.request("GET", "/echo")  # http.client reconnects; the server still serves
    assert conn.getresponse().status == 200
    conn.close()


def test_a_client_asking_to_close_gets_connection_close(server):
    conn = http.client.HTTPConnection(*server, timeout=10)
    conn.request("GET", "/echo", headers={"Connection": "close"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Connection") == "close"
    conn.close()


@pytest.mark.parametrize("which", ["moto_url", "model_url"])
def test_the_local_stack_servers_keep_connections_open(aws, which):
    url = urlsplit(getattr(aws, which))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    path = "/moto-api/" if which == "moto_url" else "/ping"
    for _ in range(3):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200 and response.getheader("Connection") != "close"
    first = conn.sock
    conn.request("GET", path)
    conn.getresponse().read()
    assert conn.sock is first
    conn.close()


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    """botocore holds an S3 PUT's body until it sees 100 Continue (or a second passes): the
    interim answer must leave at once, not wait in the write buffer for the final response."""
    import socket

    host, port = server
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(1024)  # times out (fails) if the 100 Continue is never flushed
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        final = b""
        while b'"tail": "hello"' not in final:
            final += sock.recv(4096)
        assert b"200 OK" in final
