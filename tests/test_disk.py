"""A full disk: refused at the start when the run cannot fit, one line and a "failed" record when it
fills up during the run, nothing half-written at a final path, the last good checkpoint kept and
resumable once space is freed. On a real small file system (a tmpfs the test mounts; that needs
root) and with an injected ENOSPC (always)."""
import errno
import json
import os
import subprocess

import pytest

from reproduction.store import read_checkpoint
from reproduction.train import RunFailed
from tests.tiny import numbers, resettable, scramble, small_network, stub_network, train_tiny


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size)`` mounts a tmpfs of that size at tmp_path/disk (unmounted after the test)."""
    point = tmp_path / "disk"
    point.mkdir()

    def mount(size):
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root; the injected-ENOSPC tests cover the logic")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        return point

    yield mount
    if os.path.ismount(point):
        subprocess.run(["umount", str(point)], check=True)


def _fill(folder, leave):
    """Write a ballast file until ``leave`` bytes remain free (0: until the disk refuses)."""
    with open(folder / "ballast", "wb") as f:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _filling_at(net, folder, at_call, leave):
    rng, layers, functions = net
    real, calls = functions.train, {"n": 0}

    def train_step(*args):
        calls["n"] += 1
        if calls["n"] == at_call:
            _fill(folder, leave)
        return real(*args)

    functions.train = train_step
    return net


def _no_temporaries(folder):
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_run_that_cannot_fit_is_refused_before_any_work(small_disk):
    disk = small_disk("64k")
    with pytest.raises(RunFailed, match=r"^\S+/run: 0\.0\d MB free, the run needs about 0\.1\d MB for its "
                                        r"checkpoints and parameters$"):
        train_tiny(stub_network(), disk, epochs=1)
    assert sorted(p.name for p in (disk / "run").iterdir()) == [".lock"]


def test_a_disk_filling_up_mid_run_ends_in_one_line_and_resumes_once_freed(small_disk):
    disk = small_disk("2m")
    fresh = resettable(small_network())
    straight = train_tiny(fresh(), disk.parent, name="straight", epochs=2)
    net = _filling_at(fresh(), disk, 23, leave=16384)                  # epoch 2, batch 3
    with pytest.raises(RunFailed) as failed:
        train_tiny(net, disk, epochs=2, checkpoint_every=1e-9)        # a checkpoint after every batch
    folder = disk / "run"
    assert str(failed.value) == (f"{folder}/checkpoint.h5: cannot write (no space left on the device); stopped. "
                                 f"The last good checkpoint is kept; resume with: python -m synthetic --resume {folder}")
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "failed" and record["error"] == "cannot write checkpoint.h5: no space left on the device"
    assert record["checkpoint"] == {"epoch": 1, "batch": 2, "batches": 20}
    assert read_checkpoint(folder / "checkpoint.h5").loop["batch"] == 2
    assert read_checkpoint(folder / "checkpoint.prev.h5").loop["batch"] == 1
    assert _no_temporaries(folder)

    (disk / "ballast").unlink()
    resumed = train_tiny(scramble(net), disk, epochs=2, resume=True)
    assert numbers(resumed) == numbers(straight)


def test_when_not_even_the_record_can_be_marked_the_line_says_so(small_disk):
    disk = small_disk("1m")
    net = _filling_at(stub_network(), disk, 25, leave=0)
    with pytest.raises(RunFailed, match=r"cannot write \(no space left on the device\); stopped\. .*; the record "
                                        r"could not be marked failed either \(no space left on the device\)$"):
        train_tiny(net, disk, epochs=2, checkpoint_every=1e-9)
    folder = disk / "run"
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "running"                               # as its checkpoint says, not ahead of it
    assert record["checkpoint"] == {k: read_checkpoint(folder / "checkpoint.h5").loop[k] for k in ("epoch", "batch")} | {
        "batches": 20}
    assert _no_temporaries(folder)


@pytest.mark.parametrize("what", ["checkpoint", "record", "params"])
def test_an_injected_enospc_in_any_write_fails_the_run_in_one_line(tmp_path, monkeypatch, what):
    import reproduction.train as train_module

    name = {"checkpoint": "save_checkpoint", "record": "write_json", "params": "save_params"}[what]
    real, calls = getattr(train_module, name), {"n": 0}

    def full_at_the_third(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kw)

    monkeypatch.setattr(train_module, name, full_at_the_third)
    with pytest.raises(RunFailed, match=r"cannot write \(no space left on the device\); stopped\. The last good "
                                        r"checkpoint is kept; resume with: python -m synthetic --resume \S+$"):
        train_tiny(stub_network(), tmp_path, epochs=4)
    monkeypatch.undo()
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "failed" and record["error"].endswith(": no space left on the device")
    assert len(record["epochs"]) <= read_checkpoint(tmp_path / "run" / "checkpoint.h5").loop["epoch"]
    resumed = train_tiny(stub_network(), tmp_path, epochs=4, resume=True)
    assert resumed["status"] == "finished" and [r["epoch"] for r in resumed["epochs"]] == [1, 2, 3, 4]
