"""Where one lone Embed call's time goes: stamps at each stage inside a real server, one client.

A real grpc.aio server (ViT-B-32, random weights, as `lookalike serve` runs it) in
this process, and one client in another process sending one text (or image) per
call, waiting for the answer, pausing, sending the next. The stages are timed by
wrapping the functions that start and end them (nothing else changes), so the
figures are medians over the calls of: interceptor -> servicer, tokenise/decode
(and the hop to and from the preprocess pool), the wait in the batch queue, the
model, the way back, and what lies outside the server's handler (gRPC transport
and the client).

    python bench/lone_request.py --kind text --calls 40
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.threads import apply_wait_policy, configure_torch  # noqa: E402 - before torch loads

apply_wait_policy()
configure_torch(None, 1)

from bench.common import sample_captions, sample_jpegs  # noqa: E402
from service import calls, convert, observability  # noqa: E402
from service.background import BackgroundServer  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedding import batching  # noqa: E402
from service.embedding.embedder import ClipEmbedder  # noqa: E402
from service.runtime import Dependencies  # noqa: E402

STAGES = ("call in", "servicer", "prepare start", "prepare end", "queued", "model start", "model end", "results",
          "response built", "call out")
CLIENT = r"""
import base64, json, sys, time, grpc
sys.path.insert(0, sys.argv[1])
from service.api.lookalike.v1 import embedding_service_pb2 as pb, embedding_service_pb2_grpc as rpc
inputs, kind, calls = json.load(open(sys.argv[3])), sys.argv[4], int(sys.argv[5])
stub = rpc.EmbeddingServiceStub(grpc.insecure_channel(sys.argv[2]))
took = []
for n in range(calls):
    request = (pb.EmbedRequest(images=[base64.b64decode(inputs["images"][n % len(inputs["images"])])])
               if kind == "image" else pb.EmbedRequest(texts=[inputs["texts"][n % len(inputs["texts"])]]))
    started = time.perf_counter()
    stub.Embed(request)
    took.append(time.perf_counter() - started)
    time.sleep(0.05)
print(json.dumps(took))
"""

stamps: list[tuple[str, float]] = []


def _stamped(function, before: str | None, after: str | None):
    def wrapper(*args, **kwargs):
        if before:
            stamps.append((before, time.perf_counter()))
        result = function(*args, **kwargs)
        if after:
            stamps.append((after, time.perf_counter()))
        return result
    return wrapper


def instrument() -> None:
    calls.CallRecord.__init__ = _stamped(calls.CallRecord.__init__, "call in", None)  # type: ignore[method-assign]
    observability._log_call = _stamped(observability._log_call, "call out", None)
    convert.embed_inputs = _stamped(convert.embed_inputs, "servicer", None)
    convert.embed_response = _stamped(convert.embed_response, "results", "response built")
    batching.BatchScheduler._enqueue = _stamped(batching.BatchScheduler._enqueue, "queued", None)  # type: ignore
    for name in ("prepare_texts", "prepare_image"):
        setattr(ClipEmbedder, name, _stamped(getattr(ClipEmbedder, name), "prepare start", "prepare end"))
    for name in ("encode_texts", "encode_images"):
        setattr(ClipEmbedder, name, _stamped(getattr(ClipEmbedder, name), "model start", "model end"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("text", "image"), default="text")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory(prefix="lookalike-lone-") as folder:
        work = Path(folder)
        inputs = work / "inputs.json"
        inputs.write_text(json.dumps({"images": [base64.b64encode(data).decode() for data in sample_jpegs(20, seed=7)],
                                      "texts": sample_captions(50, seed=7)}))
        settings = Settings(host="127.0.0.1", port=0, data_dir=work / "data", model="ViT-B-32", pretrained="none",
                            device="cpu")
        with BackgroundServer(settings, Dependencies.from_settings(settings)) as server:
            stamps.clear()
            done = subprocess.run([sys.executable, "-c", CLIENT, str(ROOT), server.target, str(inputs), args.kind,
                                   str(args.calls + args.warmup)], capture_output=True, text=True, check=True)
    took = json.loads(done.stdout.strip().splitlines()[-1])[args.warmup:]
    per_call: list[dict[str, float]] = []
    for label, moment in stamps:
        if label == "call in":
            per_call.append({})
        if per_call:
            per_call[-1].setdefault(label, moment)
    per_call = per_call[args.warmup:]
    print(f"one {args.kind} per call, {len(took)} calls, load average {os.getloadavg()[0]:.1f}: "
          f"client p50 {1000 * statistics.median(took):.2f} ms")
    for start, end in zip(STAGES, STAGES[1:]):
        spans = [1000 * (call[end] - call[start]) for call in per_call if start in call and end in call]
        print(f"  {start:>14} -> {end:<14} {statistics.median(spans):8.3f} ms")
    inside = statistics.median(1000 * (call["call out"] - call["call in"]) for call in per_call)
    print(f"  outside the server's handler (gRPC transport, client): "
          f"{1000 * statistics.median(took) - inside:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
