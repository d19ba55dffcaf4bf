"""One-shot init step for the compose cluster: wait until every Qdrant node is
ready and all of them agree the cluster is fully formed, then exit 0.

Lookalike replicas start only after this exits 0 (depends_on:
service_completed_successfully), because Qdrant places a collection's shards
on the peers it knows when the collection is created and does not move them
when more peers join later: a collection created against a 1-node cluster
stays on that node.

"Fully formed" on every node: /readyz answers 200, /cluster lists the expected
number of peers, a Raft leader is known, no consensus operation is pending and
the consensus thread is working. Standard library only, so it runs in any
Python image.

  python qdrant_cluster_ready.py --nodes http://qdrant-0:6333,http://qdrant-1:6333 \
      --api-key-file /run/secrets/qdrant_api_key [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def get(url: str, api_key: str | None, timeout: float = 3.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"api-key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def node_problem(node: str, expected_peers: int, api_key: str | None) -> str | None:
    """None when this node is ready and sees the whole cluster, else why not."""
    try:
        status, _ = get(f"{node}/readyz", None)
        if status != 200:
            return f"{node}/readyz answered {status}"
        status, body = get(f"{node}/cluster", api_key)
    except (OSError, ValueError) as error:
        return f"{node}: {error}"
    if status != 200:
        return f"{node}/cluster answered {status}"
    try:
        result = json.loads(body)["result"]
    except (ValueError, KeyError, TypeError):
        return f"{node}/cluster: unexpected reply {body[:200]!r}"
    if result.get("status") != "enabled":
        return f"{node}: cluster mode is {result.get('status')!r}, expected 'enabled'"
    peers = len(result.get("peers") or {})
    if peers != expected_peers:
        return f"{node} knows {peers} of {expected_peers} peers"
    raft = result.get("raft_info") or {}
    if raft.get("leader") is None:
        return f"{node}: no Raft leader yet"
    if raft.get("pending_operations"):
        return f"{node}: {raft['pending_operations']} consensus operations pending"
    thread = (result.get("consensus_thread_status") or {}).get("consensus_thread_status")
    if thread != "working":
        return f"{node}: consensus thread is {thread!r}"
    return None


def wait(nodes: list[str], expected_peers: int, api_key: str | None, timeout: float, interval: float) -> str | None:
    """None once every node is ready, else the last problem seen at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        problems = [p for p in (node_problem(node, expected_peers, api_key) for node in nodes) if p]
        if not problems:
            return None
        if time.monotonic() >= deadline:
            return "; ".join(problems)
        print("waiting: " + "; ".join(problems), file=sys.stderr, flush=True)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", required=True, help="comma-separated REST base URLs of every node")
    parser.add_argument("--peers", type=int, help="expected cluster size (default: the number of --nodes)")
    parser.add_argument("--api-key-file", type=Path, help="file holding the Qdrant API key")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    nodes = [node.strip().rstrip("/") for node in args.nodes.split(",") if node.strip()]
    api_key = args.api_key_file.read_text().strip() if args.api_key_file else None
    problem = wait(nodes, args.peers or len(nodes), api_key, args.timeout, args.interval)
    if problem:
        print(f"the Qdrant cluster did not form within {args.timeout:.0f} s: {problem}", file=sys.stderr)
        return 1
    print(f"Qdrant cluster formed: {len(nodes)} nodes ready, {args.peers or len(nodes)} peers each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
