"""Atomic publication: complete output or nothing, _SUCCESS last, no silent overwrite."""

import json
import os

import fsspec
import pytest

from distgmm.io.publish import Publication, is_published


def test_success_publishes_everything_with_marker(tmp_path):
    target = tmp_path / "out"
    with Publication(str(target)) as pub:
        assert not target.exists()
        with open(os.path.join(pub.staging_url, "a.txt"), "w") as fh:
            fh.write("x")
    assert sorted(os.listdir(target)) == ["_SUCCESS", "a.txt"]
    assert json.loads((target / "_SUCCESS").read_text())["files"] == ["a.txt"]
    assert os.listdir(tmp_path) == ["out"] and is_published(str(target))


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), Publication(str(tmp_path / "out")) as pub:
        open(os.path.join(pub.staging_url, "a.txt"), "w").close()
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        Publication(str(target)).check()
    with Publication(str(target), overwrite=True) as pub:
        open(os.path.join(pub.staging_url, "new.txt"), "w").close()
    assert sorted(os.listdir(target)) == ["_SUCCESS", "new.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_object_store_writes_marker_last(monkeypatch):
    fs = fsspec.filesystem("memory")
    order = []
    real = type(fs).pipe_file

    def spy(self, path, *a, **k):
        order.append(path.rsplit("/", 1)[-1])
        return real(self, path, *a, **k)

    with Publication("memory://bucket/out") as pub:
        fs.pipe_file(pub.staging + "/part.0", b"data")
        monkeypatch.setattr(type(fs), "pipe_file", spy)
    assert order == ["_SUCCESS"]
    assert fs.cat_file("/bucket/out/part.0") == b"data"
    assert is_published("memory://bucket/out")
    assert not [p for p in fs.ls("/bucket", detail=False) if "staging" in p]


def test_object_store_overwrite_drops_the_old_marker_before_the_old_files(monkeypatch):
    """A bulk delete is not atomic on an object store: the old _SUCCESS goes first, so a
    reader never sees it beside a half-deleted output."""
    fs = fsspec.filesystem("memory")
    with Publication("memory://bucket/ow") as pub:
        for i in range(3):
            fs.pipe_file(f"{pub.staging}/part.{i}", b"old")
    removed = []
    real = type(fs).rm

    def spy(self, path, *a, **k):
        if "/bucket/ow" in str(path) and "staging" not in str(path):
            removed.append(str(path).rsplit("/", 1)[-1])
        return real(self, path, *a, **k)

    monkeypatch.setattr(type(fs), "rm", spy)
    with Publication("memory://bucket/ow", overwrite=True) as pub:
        fs.pipe_file(pub.staging + "/part.0", b"new")
    assert removed[:2] == ["_SUCCESS", "ow"]
    assert fs.cat_file("/bucket/ow/part.0") == b"new" and not fs.exists("/bucket/ow/part.1")
    assert is_published("memory://bucket/ow")
