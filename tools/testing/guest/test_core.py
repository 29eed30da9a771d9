# SPDX-License-Identifier: GPL-2.0
"""scst.ko loads, builds SCST's sysfs tree, manages devices through `mgmt`,
refuses bad lines with -EINVAL without changing anything, and unloads
leaving nothing behind."""

import errno
import os

import pytest

from conftest import (ROOT, dmesg_since, kmemleak_report, load, loaded, mark_dmesg,
                      read, unload, write)

NULLIO = "handlers/vdisk_nullio"


def devices():
    return sorted(os.listdir(os.path.join(ROOT, "devices")))


def test_load_unload_cycles():
    for _ in range(5):
        load()
        assert loaded()
        assert os.path.isdir(ROOT)
        unload()
        assert not loaded()
        assert not os.path.exists(ROOT)


def test_tree(scst):
    for d in ("handlers", "targets", "devices"):
        assert os.path.isdir(os.path.join(ROOT, d)), d
    assert read("version").strip() != ""
    assert read("last_sysfs_mgmt_res") == "0\n"
    assert sorted(os.listdir(os.path.join(ROOT, "handlers"))) == [
        "dev_cdrom", "dev_changer", "dev_disk", "dev_disk_perf", "dev_modisk", "dev_modisk_perf",
        "dev_processor", "dev_raid", "dev_tape", "dev_tape_perf",
        "vdisk_blockio", "vdisk_fileio", "vdisk_nullio"]
    assert read(f"{NULLIO}/type") == "0 - Direct-access device (e.g., magnetic disk)\n"
    assert "add_device" in read(f"{NULLIO}/mgmt")
    assert devices() == []


def test_add_and_delete_device(scst):
    assert write(f"{NULLIO}/mgmt", "add_device nul1 size_mb=64; blocksize=4096; read_only=1\n") == 0
    assert read("last_sysfs_mgmt_res") == "0\n"
    assert devices() == ["nul1"]
    dev = "devices/nul1"
    assert read(f"{dev}/size_mb") == "64\n"
    # What add_device was given carries SCST's key mark, so that
    # scstadmin -write_config saves it; what defaults do not.
    assert read(f"{dev}/size") == f"{64 << 20}\n[key]\n"
    assert read(f"{dev}/blocksize") == "4096\n[key]\n"
    assert read(f"{dev}/read_only") == "1\n[key]\n"
    assert read(f"{dev}/nv_cache") == "0\n"
    assert read(f"{dev}/t10_dev_id") == "nul1\n"
    assert read(f"{dev}/type").startswith("0 - ")
    assert os.path.realpath(os.path.join(ROOT, dev, "handler")) == os.path.join(ROOT, NULLIO)
    assert os.path.realpath(os.path.join(ROOT, NULLIO, "nul1")) == os.path.join(ROOT, dev)
    assert os.path.isdir(os.path.join(ROOT, dev, "exported"))

    assert write(f"{NULLIO}/mgmt", "add_device nul2") == 0
    assert read("devices/nul2/size") == f"{1 << 40}\n"
    assert read("devices/nul2/blocksize") == "512\n"
    assert devices() == ["nul1", "nul2"]

    assert write(f"{NULLIO}/mgmt", "del_device nul1") == 0
    assert devices() == ["nul2"]
    assert not os.path.lexists(os.path.join(ROOT, NULLIO, "nul1"))


BAD_LINES = [
    ("\n", "empty command"),
    ("   \n", "empty command"),
    ("frobnicate nul9", "unknown command 'frobnicate'"),
    ("add_device", "missing device name"),
    ("add_device nul9 size=abc", "invalid value 'abc' for 'size'"),
    ("add_device nul9 size=1000", "non-zero multiple of the block size"),
    ("add_device nul9 size=0", "non-zero multiple of the block size"),
    ("add_device nul9 blocksize=777", "invalid value '777' for 'blocksize'"),
    ("add_device nul9 read_only=yes", "expected 0 or 1"),
    ("add_device nul9 colour=red", "unknown parameter 'colour'"),
    ("add_device nul9 size=1M; size=2M", "given twice"),
    ("add_device nul9 size=1M; size_mb=1", "cannot be given together"),
    ("add_device nul9 size", "is not key=value"),
    ("add_device a/b", "invalid name 'a/b'"),
    ("add_device " + "n" * 300, "invalid name"),
    ("del_device", "missing device name"),
    ("del_device nosuch", "'nosuch' does not exist"),
    ("del_device existing extra", "unexpected 'extra'"),
    ("add_device nul9\nadd_device nul10", "not a line of text"),
    (b"add_device \xff", "not a line of text"),
    ("add_device \xe9", "invalid name"),
]


@pytest.mark.parametrize("line,reason", BAD_LINES)
def test_bad_mgmt_line_is_refused_and_changes_nothing(scst, line, reason):
    assert write(f"{NULLIO}/mgmt", "add_device existing size_mb=1") == 0
    before = devices()
    marker = f"scst-test: bad line {line[:20]!r}".replace("\\", "/")
    mark_dmesg(marker)

    assert write(f"{NULLIO}/mgmt", line) == errno.EINVAL

    assert devices() == before
    assert read("devices/existing/size") == f"{1 << 20}\n[key]\n"
    result = read("last_sysfs_mgmt_res").splitlines()
    assert result[0] == str(-errno.EINVAL)
    assert reason in result[1]
    assert reason in dmesg_since(marker)


def test_duplicate_device_is_refused(scst):
    assert write(f"{NULLIO}/mgmt", "add_device dup") == 0
    assert write(f"{NULLIO}/mgmt", "add_device dup size_mb=2") == errno.EEXIST
    assert read("last_sysfs_mgmt_res").splitlines() == [str(-errno.EEXIST), "'dup' already exists"]
    assert read("devices/dup/size") == f"{1 << 40}\n"
    # A success clears the error.
    assert write(f"{NULLIO}/mgmt", "del_device dup") == 0
    assert read("last_sysfs_mgmt_res") == "0\n"


def test_read_only_files_refuse_writes(scst):
    for path in ("version", "last_sysfs_mgmt_res", f"{NULLIO}/type"):
        with pytest.raises(PermissionError):
            write(path, "x")


def test_unload_with_devices_leaks_nothing():
    load()
    for i in range(20):
        assert write(f"{NULLIO}/mgmt", f"add_device leak{i} size_mb={i + 1}") == 0
    for i in range(0, 20, 2):
        assert write(f"{NULLIO}/mgmt", f"del_device leak{i}") == 0
    assert write(f"{NULLIO}/mgmt", "add_device bad size=7") == errno.EINVAL
    unload()
    assert not os.path.exists(ROOT)
    # Leaks anywhere are caught by guest-run; this names ours precisely.
    report = kmemleak_report()
    assert "[scst]" not in report, report


def test_mgmt_races_with_reads_of_removed_devices(scst):
    """Writers add and delete devices while readers read their attributes:
    every write succeeds or fails with the right errno, reads see whole
    values or ENOENT, and lockdep (watched by guest-run) stays quiet."""
    import threading
    import time

    stop = time.monotonic() + 4
    errors = []

    def writer(prefix):
        n = 0
        while time.monotonic() < stop:
            name = f"{prefix}{n % 4}"
            rc = write(f"{NULLIO}/mgmt", f"add_device {name} size_mb=1")
            if rc not in (0, errno.EEXIST):
                errors.append(f"add {name}: {rc}")
            rc = write(f"{NULLIO}/mgmt", f"del_device {name}")
            if rc not in (0, errno.EINVAL):
                errors.append(f"del {name}: {rc}")
            n += 1

    def reader():
        while time.monotonic() < stop:
            for name in os.listdir(os.path.join(ROOT, "devices")):
                try:
                    value = read(f"devices/{name}/size")
                except OSError as e:
                    # Removed before the open (ENOENT) or after it (ENODEV).
                    if e.errno in (errno.ENOENT, errno.ENODEV):
                        continue
                    raise
                if value != f"{1 << 20}\n[key]\n":
                    errors.append(f"read {name}: {value!r}")

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
