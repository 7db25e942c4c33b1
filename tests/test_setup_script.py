"""scripts/setup.sh installs the PyTorch build that fits the machine (run against a stand-in python and pip)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# A stand-in interpreter: `-c "import torch"` succeeds only if HAVE_TORCH is set; `-m pip ...` records its
# arguments, one call a line, and fails for the CPU index when CPU_INDEX_DOWN is set (no network to it).
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then [ -n "${HAVE_TORCH:-}" ]; exit; fi
shift 2
echo "$*" >> "$PIP_LOG"
if [ -n "${CPU_INDEX_DOWN:-}" ] && [[ "$*" == *download.pytorch.org/whl/cpu* ]]; then exit 1; fi
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _pip_calls(tmp_path: Path, *, gpu: bool, **env: str) -> tuple[list[str], str]:
    """The pip calls the script made (arguments after ``-m pip``) and what it printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "python", FAKE_PYTHON)
    if gpu:
        _executable(bin_dir / "nvidia-smi", "#!/usr/bin/env bash\necho 'GPU 0: NVIDIA H100'\n")
    log = tmp_path / "pip.log"
    log.touch()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TORCH_")}
    environment.update(
        PATH=f"{bin_dir}:/usr/bin:/bin", PYTHON=str(bin_dir / "python"), PIP_LOG=str(log), **env
    )  # /usr/bin and /bin: bash's tools; no real nvidia-smi lives there on a test machine
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines(), result.stdout


@pytest.fixture(autouse=True)
def _no_real_gpu():
    if any((Path(d) / "nvidia-smi").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("a real nvidia-smi on the PATH the script is given")


def test_without_gpu_the_cpu_index_comes_first(tmp_path):
    calls, out = _pip_calls(tmp_path, gpu=False)
    assert calls[0].startswith("install --timeout") and calls[0].endswith(f"torch --index-url {CPU_INDEX}")
    assert calls[1] == "install --quiet -e .[test]" and len(calls) == 2
    assert "no NVIDIA GPU found: installing the CPU build of PyTorch" in out


def test_without_gpu_an_unreachable_cpu_index_falls_back_to_the_default(tmp_path):
    calls, out = _pip_calls(tmp_path, gpu=False, CPU_INDEX_DOWN="1")
    assert CPU_INDEX in calls[0] and calls[1] == "install torch" and calls[2] == "install --quiet -e .[test]"
    assert "could not be reached" in out


def test_with_gpu_the_default_index(tmp_path):
    calls, out = _pip_calls(tmp_path, gpu=True)
    assert calls == ["install torch", "install --quiet -e .[test]"]
    assert "NVIDIA GPU found" in out


def test_installed_torch_is_kept_and_overrides_are_honoured(tmp_path):
    kept, override = tmp_path / "kept", tmp_path / "override"
    kept.mkdir(), override.mkdir()
    calls, _ = _pip_calls(kept, gpu=False, HAVE_TORCH="1")
    assert calls == ["install --quiet -e .[test]"]
    calls, _ = _pip_calls(override, gpu=False, TORCH_INDEX_URL="https://example.org/whl", TORCH_SPEC="torch==2.5.1")
    assert calls[0] == "install torch==2.5.1 --index-url https://example.org/whl"
