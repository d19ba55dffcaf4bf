"""Thread and wait-policy settings, applied to a private environment mapping (never the process's)."""

from __future__ import annotations

import pytest

from service import threads


def test_passive_is_exported_when_the_user_set_nothing():
    environ: dict[str, str] = {}
    assert threads.apply_wait_policy(None, environ) == "PASSIVE"
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_the_users_own_omp_wait_policy_wins():
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.apply_wait_policy("passive", environ) == "ACTIVE"
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_setting_is_read_from_lookalike_env_and_default_leaves_libgomp_alone():
    environ = {"LOOKALIKE_OMP_WAIT_POLICY": "active"}
    assert threads.apply_wait_policy(None, environ) == "ACTIVE"
    environ = {"LOOKALIKE_OMP_WAIT_POLICY": "default"}
    assert threads.apply_wait_policy(None, environ) is None
    assert "OMP_WAIT_POLICY" not in environ


def test_numpy_blas_gets_one_thread_unless_the_user_chose():
    environ: dict[str, str] = {}
    assert threads.limit_numpy_blas(environ) == "1"
    assert environ == {"OPENBLAS_NUM_THREADS": "1"}
    environ = {"OPENBLAS_NUM_THREADS": "4"}
    assert threads.limit_numpy_blas(environ) == "4"
    assert environ == {"OPENBLAS_NUM_THREADS": "4"}


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="passive, active or default"):
        threads.apply_wait_policy("sometimes", {})


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1)])
def test_a_cgroup_cpu_quota_caps_the_threads(tmp_path, monkeypatch, cpu_max, expected):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max + "\n")
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", path)
    assert threads._cgroup_quota() == expected
    assert 1 <= threads.available_cpus() <= (expected or 1 << 16)
