"""An HTTP proxy in front of the emulator that fails the first SQS receives it sees, then passes every request
through: for the worker transport's handling of receives that fail (tests/integration/test_transport_failures.py,
tests/e2e/test_pipeline.py)."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FlakyProxy(ThreadingHTTPServer):
    """Passes requests to the emulator, except the first `failures` receives: answered with `statuses` in turn,
    or never (`hang`)."""

    daemon_threads = True

    def __init__(self, upstream: str, *, failures: int, hang: bool = False, statuses: tuple[int, ...] = (500,)):
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = urlsplit(upstream)
        self.failures, self.hang, self.statuses = failures, hang, statuses
        self.failed = 0
        self.lock = threading.Lock()  # receives of several queues come at once
        self.released = threading.Event()  # lets a hung request end when the test does

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.shutdown()
        self.server_close()


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy: FlakyProxy = self.server
        receive = "ReceiveMessage" in self.headers.get("X-Amz-Target", "") or b"Action=ReceiveMessage" in body
        with proxy.lock:
            fail = receive and proxy.failed < proxy.failures
            if fail:
                status = proxy.statuses[proxy.failed % len(proxy.statuses)]
                proxy.failed += 1
        if fail:
            if proxy.hang:
                proxy.released.wait()
                self.close_connection = True
                return
            self._answer(status, {"Content-Type": "application/x-amz-json-1.0"}, b'{"__type": "Refused"}')
            return
        upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request("POST", self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        passed = {k: v for k, v in response.getheaders() if k.lower() not in ("connection", "transfer-encoding")}
        self._answer(response.status, passed, data)

    def _answer(self, status: int, headers: dict, data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass
