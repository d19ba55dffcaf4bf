"""Docker HEALTHCHECK for a Lookalike container: asks the server's own
grpc.health.v1 service (exempt from auth) and exits 0 only on SERVING.

Reads the same LOOKALIKE_PORT / LOOKALIKE_TLS_* variables as the server, so
it keeps working when TLS is switched on. With TLS it trusts
HEALTHCHECK_CA_FILE (default: the server's own certificate, right for a
self-signed one) and expects the name HEALTHCHECK_SERVER_NAME (default
localhost). With mTLS (LOOKALIKE_TLS_CLIENT_CA_FILE) it presents the server's
own certificate and key, which works when the client CA also signed the
server certificate; otherwise set HEALTHCHECK_CLIENT_CERT/KEY_FILE.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def channel(environ: dict[str, str]) -> grpc.Channel:
    target = f"127.0.0.1:{environ.get('LOOKALIKE_PORT', '50051')}"
    cert = environ.get("LOOKALIKE_TLS_CERT_FILE")
    if not cert:
        return grpc.insecure_channel(target)
    trust = Path(environ.get("HEALTHCHECK_CA_FILE") or cert).read_bytes()
    client_cert = client_key = None
    if environ.get("LOOKALIKE_TLS_CLIENT_CA_FILE"):
        client_cert = Path(environ.get("HEALTHCHECK_CLIENT_CERT_FILE") or cert).read_bytes()
        client_key = Path(environ.get("HEALTHCHECK_CLIENT_KEY_FILE") or environ["LOOKALIKE_TLS_KEY_FILE"]).read_bytes()
    credentials = grpc.ssl_channel_credentials(trust, client_key, client_cert)
    name = environ.get("HEALTHCHECK_SERVER_NAME", "localhost")
    return grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", name)])


def main(environ: dict[str, str]) -> int:
    try:
        with channel(environ) as chan:
            reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=3)
    except (grpc.RpcError, OSError, KeyError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
