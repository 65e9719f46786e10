"""The run folder (reproduction/program.py): a new one for every run, never an existing run's, and
found unwritable or full before any data is loaded or any function compiled (issue 10)."""
import argparse
import errno
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from reproduction import options, program
from tests.other_user import SKIP_REASON, run_python


def args(**kw):
    base = dict(resume=None, out=None, dataset="mnist")
    return argparse.Namespace(**{**base, **kw})


def test_default_run_folders_are_new_even_within_one_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = []
    lock = threading.Lock()

    def start():
        with program.run_folder(args()) as folder:
            (folder / "record.json").write_text("{}")   # a run that started keeps its folder
            with lock:
                made.append(folder)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and len(set(made)) == 8
    assert all(f.parent == Path("results") / "runs" and f.name.startswith("mnist-") for f in made)


def test_two_processes_starting_together_get_two_folders(tmp_path):
    code = ("import argparse; from reproduction import program\n"
            "with program.run_folder(argparse.Namespace(resume=None, out=None, dataset='svhn')) as f:\n"
            "    (f / 'record.json').write_text('{}'); print(f)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen(["python", "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    folders = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(folders)) == 3, folders


def test_a_failed_start_leaves_no_folder_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with program.run_folder(args()):
            raise KeyboardInterrupt    # Ctrl-C while loading or compiling
    assert not (tmp_path / "results").exists()
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError):
        with program.run_folder(args(out=str(out))):
            raise RuntimeError
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(RuntimeError):
        with program.run_folder(args(out=str(existing))):
            raise RuntimeError
    assert existing.is_dir()    # a folder the user made is theirs


def test_out_that_became_a_run_meanwhile_is_refused(tmp_path):
    (tmp_path / "record.json").write_text("{}")
    with pytest.raises(program.RunFolderError, match="--resume"):
        with program.run_folder(args(out=str(tmp_path))):
            pass


def test_out_on_a_file_cannot_be_created(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(program.RunFolderError, match="cannot create the run folder"):
        with program.run_folder(args(out=str(tmp_path / "f" / "run"))):
            pass


def test_not_enough_space_for_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 5 * 10**6, 5 * 10**6))
    with pytest.raises(program.RunFolderError) as e:
        with program.run_folder(args(out=str(tmp_path / "run")), need_bytes=50 * 10**6):
            pass
    assert "5 MB free, the run needs about 50 MB" in str(e.value) and str(tmp_path / "run") in str(e.value)
    assert not (tmp_path / "run").exists()


def test_the_disk_estimate_counts_three_checkpoints_and_the_parameters():
    import numpy as np
    import mnist.__main__ as m

    c = argparse.Namespace(**options.recipe(vars(m)))
    c.num_units, c.n_hidden_layers = 8, 1
    layers = m.build_mlp(c, np.random.RandomState(0))
    p = 4 * ((784 * 8 + 5 * 8) + (8 * 10 + 5 * 10))      # W and b, beta, gamma, mean, inv_std per block
    assert program.parameter_bytes(layers) == p
    assert program.disk_needed(layers) == 11 * p and program.disk_needed(layers, npz=True) == 13 * p


def test_a_full_disk_is_found_by_the_write_test(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(program.RunFolderError, match="cannot write there .the disk is full."):
        with program.run_folder(args(out=str(tmp_path / "run"))):
            pass
    assert not (tmp_path / "run").exists()


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs, filled: a real full disk (needs root and a kernel that lets us mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission): the ENOSPC case is "
                    "covered by test_a_full_disk_is_found_by_the_write_test")
    try:
        with open(mount / "filler", "wb") as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk(small_filesystem):
    with pytest.raises(program.RunFolderError) as e:
        with program.run_folder(args(out=str(small_filesystem / "run"))):
            pass
    message = str(e.value)
    assert "cannot" in message and ("disk is full" in message or "No space" in message), message


@pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))
def test_an_unwritable_folder_as_a_user_without_permission(tmp_path):
    def attempt(out):
        result = run_python(
            "import argparse\nfrom reproduction import program\n"
            f"a = argparse.Namespace(resume=None, out={str(out)!r}, dataset='mnist')\n"
            "try:\n    with program.run_folder(a): pass\nexcept program.RunFolderError as e:\n    print(e)")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert attempt(locked / "run") == f"{locked / 'run'}: cannot create the run folder (Permission denied)"
        assert attempt(locked) == f"{locked}: cannot write there (Permission denied)"
    finally:
        locked.chmod(0o755)
