"""HTTP front of the emulator: Braket's rest-json routes, SigV4 region scoping, admin routes.

Each response goes out in one write with TCP_NODELAY: http.server's default of writing the
headers and the body separately costs ~40 ms per keep-alive response (delayed ACK). Request
heads are parsed here too (`parse_request`): http.server runs the email package's MIME
parser on every request's headers, about a tenth of the emulator's CPU per search page.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pipelines.emulator.devices import REGIONS
from pipelines.emulator.errors import BraketError
from pipelines.emulator.service import Emulator

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")

# (method, compiled path, operation); path groups are URL-encoded ARNs.
ROUTES = [
    ("POST", re.compile(r"^/quantum-tasks$"), "SearchQuantumTasks"),
    ("GET", re.compile(r"^/quantum-task/([^/]+)$"), "GetQuantumTask"),
    ("PUT", re.compile(r"^/quantum-task/([^/]+)/cancel$"), "CancelQuantumTask"),
    ("POST", re.compile(r"^/quantum-task$"), "CreateQuantumTask"),
    ("POST", re.compile(r"^/devices$"), "SearchDevices"),
    ("GET", re.compile(r"^/device/([^/]+)$"), "GetDevice"),
]


# Limits of http.client, which http.server's own parsing applies.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class RequestHeaders(dict):
    """Request headers by lower-cased name; `get` and `[]` take any case."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())


class BraketHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    disable_nagle_algorithm = True
    server_version = "braket-emulator"
    emulator: Emulator  # set on the subclass made by make_server

    def log_message(self, format, *args):  # quiet: the stats endpoint counts requests
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing ----------------------------------------------------------------------------

    def parse_request(self) -> bool:
        """The request line and headers, as http.server's parse_request sets them (command,
        path, request_version, headers, close_connection), for HTTP/1.0 and 1.1. False: the
        connection closes, after an error response unless the line was empty."""
        self.command = None
        self.request_version = "HTTP/1.1"  # errors below get a status line, unlike HTTP/0.9
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:  # a stray empty line: closed without an answer, as http.server does
            return False
        if len(words) == 3 and re.fullmatch(r"HTTP/([2-9]|\d\d+)\.\d+", words[2]):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
            return False
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request ({self.requestline!r})")
            return False
        self.command, self.path, self.request_version = words
        headers, name = RequestHeaders(), None
        for count in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(line) > _MAX_LINE or count == _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            text = str(line, "iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and name is not None:  # obsolete line folding
                headers[name] += " " + text.strip()
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line ({text!r})")
                return False
            name = name.lower()
            headers.setdefault(name, value.strip())  # a repeated header: the first, as stdlib's get
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if (
            headers.get("expect", "").lower() == "100-continue"
            and self.request_version == "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        request_id = str(uuid.uuid4())
        head = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"x-amzn-RequestId: {request_id}",
            f"Date: {self.date_time_string()}",
        ]
        for key, value in (extra or {}).items():
            head.append(f"{key}: {value}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.log_request(status)

    def _send_error(self, err: BraketError) -> None:
        body = orjson.dumps({"message": err.message})
        self._send(
            err.http_status,
            body,
            {
                "x-amzn-ErrorType": f"{err.code}:http://internal.amazon.com/coral/com.amazonaws.braket/"
            },
        )

    def _region(self) -> str:
        auth = self.headers.get("Authorization", "")
        match = _CREDENTIAL_SCOPE.search(auth)
        if not match:
            raise BraketError("AccessDeniedException", "Missing Authentication Token")
        region, service = match.groups()
        if service != "braket":
            raise BraketError(
                "AccessDeniedException",
                f"Credential should be scoped to service 'braket', not '{service}'",
            )
        if region not in REGIONS:
            raise BraketError(
                "AccessDeniedException", f"Amazon Braket is not available in region '{region}'"
            )
        return region

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self._read_body()
        if parts.path.startswith("/_emulator/"):
            return self._admin(method, parts.path, body)
        for route_method, pattern, operation in ROUTES:
            match = pattern.match(parts.path)
            if match and route_method == method:
                return self._braket(operation, match.groups(), parts.query, body)
        self._send(
            404,
            orjson.dumps({"message": f"No route for {method} {parts.path}"}),
            {"x-amzn-ErrorType": "UnknownOperationException"},
        )

    def _braket(self, operation: str, groups, query: str, raw: bytes) -> None:
        emulator = self.emulator
        if emulator.config.latency_ms:
            time.sleep(emulator.config.latency_ms / 1000)
        try:
            region = self._region()
        except BraketError as err:
            return self._send_error(err)
        fault = emulator.fault()
        if fault is not None:
            emulator.count(region, operation, "faulted")
            if fault == "drop":
                self.close_connection = True
                self.connection.close()  # the client sees a reset connection, no response
                return
            return self._send_error(
                BraketError("InternalServiceException", "Internal service error")
            )
        if not emulator.quotas.admit(region, operation):
            emulator.count(region, operation, "throttled")
            return self._send_error(BraketError("ThrottlingException", "Rate exceeded"))
        emulator.count(region, operation)
        try:
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise BraketError("ValidationException", "Request body must be a JSON object")
            arn = unquote(groups[0]) if groups else None
            if operation == "SearchQuantumTasks":
                result, status = emulator.search_quantum_tasks(region, body), 200
            elif operation == "GetQuantumTask":
                attrs = parse_qs(query).get("additionalAttributeNames", [])
                result, status = emulator.get_quantum_task(region, arn, attrs), 200
            elif operation == "CancelQuantumTask":
                result, status = emulator.cancel_quantum_task(region, arn, body), 200
            elif operation == "CreateQuantumTask":
                result, status = emulator.create_quantum_task(region, body), 201
            elif operation == "SearchDevices":
                result, status = emulator.search_devices(region, body), 200
            else:
                result, status = emulator.get_device(region, arn), 200
        except BraketError as err:
            return self._send_error(err)
        except orjson.JSONDecodeError as exc:
            return self._send_error(
                BraketError("ValidationException", f"Request body is not valid JSON: {exc}")
            )
        except Exception as exc:  # a bug must answer 500, not look like a dropped connection
            return self._send_error(
                BraketError("InternalServiceException", f"{type(exc).__name__}: {exc}")
            )
        self._send(status, orjson.dumps(result))

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        emulator = self.emulator
        try:
            body = orjson.loads(raw) if raw else {}
            if (method, path) == ("GET", "/_emulator/tasks"):
                result = emulator.store.all_summaries()
            elif (method, path) == ("POST", "/_emulator/tasks"):
                specs = body["tasks"] if isinstance(body, dict) else body
                result = {"tasks": emulator.insert_tasks(specs)}
            elif (method, path) == ("POST", "/_emulator/clock"):
                emulator.clock.advance(float(body.get("advance_seconds", 0)))
                result = {"now_ms": emulator.clock.now_ms()}
            elif (method, path) == ("GET", "/_emulator/clock"):
                result = {"now_ms": emulator.clock.now_ms()}
            elif (method, path) == ("GET", "/_emulator/stats"):
                result = emulator.stats_snapshot()
            else:
                return self._send(404, orjson.dumps({"message": f"No admin route {method} {path}"}))
        except BraketError as err:
            return self._send_error(err)
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, orjson.dumps({"message": f"Bad admin request: {exc}"}))
        self._send(200, orjson.dumps(result))


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    handler = type("BoundBraketHandler", (BraketHandler,), {"emulator": emulator})
    return EmulatorServer((host, port), handler)


def serve_in_thread(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """Start serving in a daemon thread (tests, the demo); stop with `server.shutdown()`."""
    server = make_server(emulator, host, port)
    # A short poll interval makes shutdown() return quickly (tests start and stop many).
    threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="braket-emulator",
        daemon=True,
    ).start()
    return server


def serve_until_signalled(emulator: Emulator, host: str, port: int, out=None) -> None:
    """Serve in the foreground; print the URL first; stop cleanly on SIGINT or SIGTERM."""
    import signal
    import sys

    out = out or sys.stdout
    server = make_server(emulator, host, port)
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    thread = threading.Thread(target=server.serve_forever, name="braket-emulator", daemon=True)
    thread.start()
    print(server.url, file=out, flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    print("emulator stopped", file=out, flush=True)
