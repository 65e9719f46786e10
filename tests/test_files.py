"""Atomic writes, the previous-file rotation, leftover temporaries, the run-folder lock."""
import os

import pytest

from reproduction.files import (FolderBusy, OutputError, atomic_output, check_writable, folder_lock,
                                remove_leftovers, write_json)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(ZeroDivisionError):
        with atomic_output(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            1 / 0
    assert (tmp_path / "r.json").read_text() == '{\n "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["r.json"]


def test_previous_keeps_the_file_replaced_and_the_target_never_goes_missing(tmp_path):
    target, prev = tmp_path / "c.h5", tmp_path / "c.prev.h5"
    for text in ("one", "two", "three"):
        with atomic_output(target, previous=prev) as tmp:
            tmp.write_text(text)
            assert not target.exists() or target.read_text() != text
    assert target.read_text() == "three" and prev.read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["c.h5", "c.prev.h5"]


def test_leftovers_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    keep = ["record.json", ".lock", ".record.json.tmp", ".notes.abc12345.tmp", "x.record.json.abc12345.tmp"]
    gone = [".record.json.k3j_9xq1.tmp", ".checkpoint.h5.abcdefgh.tmp", ".checkpoint.prev.h5.link.tmp"]
    for name in keep + gone:
        (tmp_path / name).write_text("x")
    (tmp_path / ".params.h5.abcdefgh.tmp").mkdir()           # not a file: kept
    removed = remove_leftovers(tmp_path, ["record.json", "checkpoint.h5", "checkpoint.prev.h5", "params.h5"])
    assert sorted(p.name for p in removed) == sorted(gone)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + [".params.h5.abcdefgh.tmp"])
    assert [p.name for p in remove_leftovers(tmp_path)] == [".notes.abc12345.tmp"]   # any name
    assert remove_leftovers(tmp_path / "missing") == []


def test_a_folder_lock_keeps_a_second_holder_out_until_released(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderBusy, match="another process is using this run folder"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):
        pass


def test_check_writable_names_the_folder_and_the_problem(tmp_path):
    check_writable(tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run").is_dir() and os.listdir(tmp_path / "new" / "run") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/run: cannot write there \("):
        check_writable(tmp_path / "file" / "run")
    with pytest.raises(OutputError, match=r"MB free, the run needs about 1,000,000,000 MB for its checkpoints and parameters$"):
        check_writable(tmp_path, need_bytes=10 ** 15)
