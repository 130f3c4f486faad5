"""An OTLP/HTTP endpoint on 127.0.0.1 that accepts every export (traces, metrics, logs) with 200 and counts
what it got; `on_export(path, body)`, if given, sees each one. Standard library only.

    with OtlpSink() as sink:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class OtlpSink:
    def __init__(self, on_export: Callable[[str, bytes], None] | None = None) -> None:
        sink = self
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with sink.lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                if on_export is not None:
                    on_export(self.path, body)
                # An empty Export*ServiceResponse: zero bytes of protobuf.
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
