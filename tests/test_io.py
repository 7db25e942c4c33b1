"""omnicell._core.atomic.atomic_output: no partial output and no hidden temporary, also when killed."""

import selectors
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from omnicell._core.atomic import atomic_output

SRC = Path(__file__).resolve().parents[1] / "src"


def test_success_replaces_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out.h5ad"
    target.write_text("old")
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".") and temporary.suffix == ".h5ad"
        temporary.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


@pytest.mark.parametrize("directory", [False, True])
def test_output_gets_the_permissions_of_a_plain_open(tmp_path, directory):
    import os

    target, plain = tmp_path / "out", tmp_path / "plain"
    with atomic_output(target, directory=directory) as temporary:
        if not directory:
            temporary.write_text("new")
    plain.mkdir() if directory else plain.write_text("x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert target.stat().st_mode & 0o044 or os.umask(os.umask(0)) & 0o044  # readable by others unless umask forbids


def test_error_keeps_old_output_and_removes_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_directory_replaces_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a").write_text("old")
    with atomic_output(target, directory=True) as temporary:
        (temporary / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_handlers_restored_after_use(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with atomic_output(tmp_path / "x") as temporary:
        temporary.write_text("x")
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("directory", [False, True])
def test_killed_during_write_leaves_no_temporary(tmp_path, signum, directory):
    target = tmp_path / ("model" if directory else "out.h5ad")
    script = textwrap.dedent(
        f"""
        import importlib.util, signal, sys, time
        from pathlib import Path
        # The dispositions of an ordinary process: a test runner (or whatever started it) may have
        # set SIGTERM or SIGINT to be ignored or blocked, and a child inherits that.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGTERM, signal.SIGINT}})
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Load the module alone (it imports nothing of omnicell): a fast subprocess.
        spec = importlib.util.spec_from_file_location("omnicell_io", {str(SRC / "omnicell" / "_core" / "atomic.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        atomic_output = module.atomic_output
        with atomic_output({str(target)!r}, directory={directory}) as temporary:
            (temporary / "part" if {directory} else temporary).write_text("partial")
            print("writing", flush=True)  # the parent signals only once this line is read
            time.sleep(3600)
        print("not interrupted", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Wait for the child's readiness line, however slow the machine (generous limit, never a fixed sleep).
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=300), "the child did not start writing within 300 s"
        assert process.stdout.readline().strip() == b"writing", process.stderr.read().decode()[-2000:]
        assert any(p.name.startswith(".") for p in tmp_path.iterdir())  # the temporary exists while writing
        process.send_signal(signum)
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail("the process did not stop within 300 s of the signal")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out, err = process.communicate()
    assert b"not interrupted" not in out
    assert process.returncode != 0
    if signum == signal.SIGTERM:
        assert process.returncode == -signal.SIGTERM  # still reported as killed by SIGTERM
    else:
        assert b"KeyboardInterrupt" in err  # Python's own SIGINT behaviour, after the clean-up
    assert list(tmp_path.iterdir()) == []
