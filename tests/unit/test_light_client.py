"""The client and the CLI's client commands import nothing heavy.

Checked in a fresh interpreter (this test process has torch loaded already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "open_clip", "PIL", "qdrant_client", "qdrant_edge", "numpy", "pydantic",
         "pydantic_settings", "safetensors")
ROOT = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> dict:
    probe = code + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_client_loads_no_model_stack_and_no_storage():
    assert loaded_after("import service.client, service.client_messages, service.wire") == []


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["search", "--help"], ["recommend", "--help"], ["events", "--help"],
    ["ingest", "--help"], ["delete", "--help"],
    # a real call that fails to connect still goes through the whole client path
    ["get", "x", "--server", "127.0.0.1:1", "--timeout", "2"],
])
def test_client_commands_load_no_model_stack(argv):
    code = ("from service.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert loaded_after(code) == []


def test_serve_help_does_load_the_settings_but_still_not_the_model():
    code = "from service.cli import main\ntry:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass"
    assert set(loaded_after(code)) <= {"pydantic", "pydantic_settings"}
