"""An OTLP/gRPC trace receiver on 127.0.0.1 (grpcio), decoding spans as the HTTP receiver does."""

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.otlp import OtlpReceiver


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(  # noqa: N802 - the generated service's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.receiver.decode(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcOtlpReceiver(OtlpReceiver):
    """`endpoint` is an http:// URL, the form OTEL_EXPORTER_OTLP_ENDPOINT takes for gRPC."""

    def __enter__(self) -> "GrpcOtlpReceiver":
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)
