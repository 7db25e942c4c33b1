"""Helpers shared by test modules."""

from __future__ import annotations

import argparse

import numpy as np


def align_signs(actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip columns (last axis) of ``actual`` to the sign of ``reference``: eigenvectors have no sign."""
    flat_actual = actual.reshape(-1, actual.shape[-1])
    flat_reference = reference.reshape(-1, reference.shape[-1])
    signs = np.sign((flat_actual * flat_reference).sum(0))
    signs[signs == 0] = 1
    return actual * signs


def shown_options(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, set[str]]:
    """The (sub)command ``omnicell WORDS`` calls and the options its ``--help`` shows (hidden aliases left out)."""
    path = []
    while True:
        commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        name = next((word for word in words if not word.startswith("-")), None)
        if name not in commands:
            break
        path.append(name)
        parser = commands[name]
        words = words[words.index(name) + 1 :]
    shown = {o for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}
    return " ".join(path), shown
