import os
import stat

import pytest

from glass_engine.fileio import atomic_write_text


def test_atomic_write_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "data.txt"
    atomic_write_text(target, "first")

    def failing(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    from glass_engine.fileio import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_atomic_write_uses_normal_file_permissions(tmp_path):
    target = tmp_path / "report.txt"
    atomic_write_text(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
