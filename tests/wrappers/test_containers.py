"""The Dockerfile, checked without a Docker daemon (CI has none): instructions, build arguments, copied paths."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "wrappers" / "containers" / "Dockerfile"
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "CMD", "LABEL", "ENTRYPOINT", "USER", "EXPOSE"}


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_instructions_are_known_and_base_is_a_build_argument():
    instructions = _instructions()
    assert {keyword for keyword, _ in instructions} <= INSTRUCTIONS
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim")  # CPU by default, any base by --build-arg
    assert instructions[1] == ("FROM", "${BASE}")
    arguments = {body.split("=", 1)[0] for keyword, body in instructions if keyword == "ARG"}
    assert {"BASE", "TORCH_INDEX", "TORCH_SPEC"} <= arguments
    assert any("whl/cpu" in body for keyword, body in instructions if keyword == "ARG")


def test_copied_paths_exist_and_are_not_ignored():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, body in _instructions():
        if keyword == "COPY":
            *sources, _ = body.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert source.rstrip("/") in kept, f"{source} is excluded by Dockerfile.dockerignore"
