"""CPU threads for a server process: settled once, at the entry, before torch loads.

Why this matters (measured, BENCHMARKS.md "Shared cores"): torch's CPU kernels run
on an OpenMP pool. libgomp's default wait policy spins between parallel regions, so
the pool's workers keep their cores busy while the Python side (gRPC, decode,
tokenise) or any other process on the host wants them. With one request per model
call (batch 1, many short regions) on shared cores, about half of all samples sat
in libgomp's wait loop and throughput fell 3-10x.

The fix has three parts: the server batches across requests (fewer, longer
parallel regions: service/embedding/batching.py), decoding runs on its own small
pool instead of between model calls, and the workers sleep instead of spinning
(OMP_WAIT_POLICY=PASSIVE) and are no more than the CPUs this process may use
(affinity and cgroup quota: a container limited to 2 CPUs on a 64-core node would
otherwise start 64 spinning workers).

libgomp reads OMP_WAIT_POLICY once, when torch's shared library loads; setting it
later does nothing, so `apply_wait_policy` must run before `import torch`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import MutableMapping

log = logging.getLogger(__name__)

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
SETTING_ENV = "LOOKALIKE_OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "passive"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
NUMPY_BLAS_ENV = "OPENBLAS_NUM_THREADS"


def apply_wait_policy(policy: str | None = None, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Export OMP_WAIT_POLICY for `policy` unless the user set it; returns what is in effect.

    `policy` is passive | active | default (leave libgomp's own); None reads
    LOOKALIKE_OMP_WAIT_POLICY, then falls back to passive.
    """
    environ = os.environ if environ is None else environ
    policy = (policy or environ.get(SETTING_ENV) or DEFAULT_WAIT_POLICY).strip().lower()
    if WAIT_POLICY_ENV in environ:
        return environ[WAIT_POLICY_ENV]
    if policy == "default":
        return None
    if policy not in ("passive", "active"):
        raise ValueError(f"omp_wait_policy must be passive, active or default, not {policy!r}")
    if "torch" in sys.modules and environ is os.environ:
        log.warning("torch is already loaded, so OMP_WAIT_POLICY=%s cannot take effect in this process; "
                    "export it before starting Python", policy.upper())
    environ[WAIT_POLICY_ENV] = policy.upper()
    return environ[WAIT_POLICY_ENV]


def limit_numpy_blas(environ: MutableMapping[str, str] | None = None) -> str:
    """One thread for numpy's own BLAS (the OpenBLAS numpy ships; torch brings MKL, set by
    configure_torch), unless OPENBLAS_NUM_THREADS is already set; returns what is in effect.

    numpy runs the recommender's small products (profile clustering, ranking: a few
    hundred rows by 512), many per request, from several request threads at once.
    Split over threads, each product waits for a helper thread that, on shared cores,
    is often not running: measured in BENCHMARKS.md P4, a cold Recommend took 2-7x
    longer with two threads than with one. OpenBLAS reads this when numpy loads, so
    it must run before `import numpy`.
    """
    environ = os.environ if environ is None else environ
    if NUMPY_BLAS_ENV not in environ:
        if "numpy" in sys.modules and environ is os.environ:
            log.warning("numpy is already loaded, so %s=1 cannot take effect in this process", NUMPY_BLAS_ENV)
        environ[NUMPY_BLAS_ENV] = "1"
    return environ[NUMPY_BLAS_ENV]


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def _cgroup_quota() -> int | None:
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def configure_torch(intra_op: int | None, inter_op: int) -> tuple[int, int]:
    """Set torch's thread counts for the process (once, at the entry); returns (intra, inter) in effect."""
    import torch

    intra = intra_op or available_cpus()
    torch.set_num_threads(intra)
    try:
        torch.set_num_interop_threads(inter_op)
    except RuntimeError:  # already set, or inter-op work already ran: torch allows it only once
        log.debug("torch inter-op threads already fixed at %d", torch.get_num_interop_threads())
    log.info("torch threads: %d intra-op, %d inter-op; OMP_WAIT_POLICY=%s", torch.get_num_threads(),
             torch.get_num_interop_threads(), os.environ.get(WAIT_POLICY_ENV, "(libgomp default: spin)"))
    return torch.get_num_threads(), torch.get_num_interop_threads()
