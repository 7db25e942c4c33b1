"""The fused rotary attention kernel (``attention_backend="triton"``) on CPU, through Triton's interpreter.

The cases live in ``triton_cases.py`` and run in a child pytest process with ``TRITON_INTERPRET=1``:
the variable must be set before triton is first imported, and must not leak into the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the 'kernels' extra (triton) is not installed")


def test_triton_kernel_cases_under_the_interpreter():
    here = Path(__file__).resolve().parent
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "triton_cases.py")],
        cwd=here.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1:] or [""]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in summary[0] and "skipped" not in summary[0], summary[0]
