# SPDX-License-Identifier: GPL-2.0
"""Pass-through handlers (dev_disk, dev_disk_perf, ...): a scsi_debug disk
of the guest's own SCSI stack exported by its H:C:I:L through scst_local,
its data, status and sense checked against the device seen directly."""

import contextlib
import glob
import mmap
import os
import re
import struct
import subprocess
import threading
import time

from conftest import (ROOT, TAPE, device_of, devices, errno, export_tape, fio_running, fresh,
                      host_of, iscsi_export, kill_fio, libiscsi_table, local_disk,
                      local_sessions, mgmt, mt, open_iscsi_login, read, remove_module, sg_io,
                      sh, side_by_side, sums_of, tree, write)

MiB = 1 << 20

# libiscsi's suites run on scsi_debug directly and through dev_disk over
# iSCSI: a slice in CI, every suite of iscsi-test-cu-local with
# PASSTHROUGH_LIBISCSI=all (Documentation/testing.rst).
LIBISCSI_SLICE = "Inquiry Read10 Write10"

# What scsi_debug does wrong that only a larger transfer than its own sg
# node's shows: libiscsi's tests then fail through the target though they
# pass directly, where the sg node's limit (240 blocks) stops them first.
SCSI_DEBUG_OWN = {
    name: "scsi_debug's Block Limits page gives no MAXIMUM COMPARE AND WRITE LENGTH, so "
          "libiscsi assumes 256 blocks; the one-byte NUMBER OF LOGICAL BLOCKS reads that "
          "as 0, which scsi_debug answers GOOD without comparing or writing"
    for name in ("SCSI.CompareAndWrite.Simple", "SCSI.CompareAndWrite.Miscompare")
}


@contextlib.contextmanager
def scsi_debug_disk(size_mb=64):
    """A scsi_debug disk: (its H:C:I:L, its /dev/sdX, its /dev/sgN), removed
    afterwards."""
    sh("modprobe", "scsi_debug", f"dev_size_mb={size_mb}")
    try:
        found = []
        for _ in range(100):
            found = glob.glob("/sys/bus/pseudo/drivers/scsi_debug/adapter*/host*/"
                              "target*/*:*:*:*")
            if found and glob.glob(found[0] + "/block/*") and \
                    glob.glob(found[0] + "/scsi_generic/*"):
                break
            time.sleep(0.1)
        assert found, "scsi_debug made no disk"
        sh("udevadm", "settle", check=False)
        sd = "/dev/" + os.path.basename(glob.glob(found[0] + "/block/*")[0])
        sg = "/dev/" + os.path.basename(glob.glob(found[0] + "/scsi_generic/*")[0])
        yield os.path.basename(found[0]), sd, sg
    finally:
        remove_module("scsi_debug")


def refused(path, line):
    """The errno of a mgmt line that must fail, and the reason it gave."""
    rc = write(path, line)
    assert rc != 0, f"{path}: {line!r} was accepted"
    return rc, read("last_sysfs_mgmt_res")


def read10(lba, blocks):
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def sense_key_asc(sense):
    """(key, ASC, ASCQ) of fixed or descriptor sense."""
    if sense[0] & 0x7f in (0x72, 0x73):
        return sense[1] & 0x0f, sense[2], sense[3]
    return sense[2] & 0x0f, sense[12], sense[13]


def test_add_device_is_checked(scst):
    with scsi_debug_disk(16) as (hctl, _sd, _sg):
        handlers = os.listdir(os.path.join(ROOT, "handlers"))
        for h in ("dev_disk", "dev_disk_perf", "dev_tape", "dev_tape_perf", "dev_changer",
                  "dev_processor", "dev_raid", "dev_cdrom", "dev_modisk", "dev_modisk_perf"):
            assert h in handlers
        # A disk is not a tape.
        rc, why = refused("handlers/dev_tape/mgmt", f"add_device {hctl}")
        assert rc == errno.EINVAL and "type" in why, why
        assert not os.path.exists(os.path.join(ROOT, "devices", hctl))
        # Not an H:C:I:L, no such device, a parameter dev_disk does not take.
        rc, why = refused("handlers/dev_disk/mgmt", "add_device 1:2:3")
        assert rc == errno.EINVAL, why
        rc, why = refused("handlers/dev_disk/mgmt", "add_device 99:0:0:0")
        assert rc == errno.EINVAL and "99:0:0:0" in why, why
        rc, why = refused("handlers/dev_disk/mgmt", f"add_device {hctl} filename=/x")
        assert rc == errno.EINVAL and "filename" in why, why

        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        assert read(f"devices/{hctl}/type").startswith("0")
        assert os.path.realpath(os.path.join(ROOT, "devices", hctl, "handler")).endswith(
            "dev_disk")
        # Assigned already, to this handler or another.
        rc, why = refused("handlers/dev_disk_perf/mgmt", f"add_device {hctl}")
        assert rc == errno.EEXIST, why
        rc, why = refused("handlers/dev_disk/mgmt", f"add_device {hctl}")
        assert rc == errno.EEXIST, why
        # While exported, scsi_debug's module is held.
        assert sh("rmmod", "scsi_debug", check=False).returncode != 0
        mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")
        assert not os.path.exists(os.path.join(ROOT, "devices", hctl))


def test_dev_disk_data_status_and_sense(scst):
    with scsi_debug_disk(64) as (hctl, sd, _sg):
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            disk, sg = local_disk(hctl, "pt")
            # The device's own identity, not the target's.
            inq = sh("sg_inq", sg).stdout
            assert "scsi_debug" in inq, inq
            cap = sh("sg_readcap", sg).stdout
            assert "67108864 bytes" in cap, cap

            # Data written through the target is on the device, and back.
            sh("fio", "--name=pt", f"--filename={disk}", "--direct=1", "--ioengine=libaio",
               "--rw=randwrite", "--bs=4k", "--iodepth=16", f"--size={16 * MiB}",
               "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0")
            pattern = os.urandom(MiB)
            fd = os.open(disk, os.O_RDWR | os.O_DIRECT)
            try:
                buf = mmap.mmap(-1, MiB)
                buf.write(pattern)
                os.pwritev(fd, [buf], 32 * MiB)
            finally:
                os.close(fd)
            with open(sd, "rb", buffering=0) as f:
                # The page cache of the device's own sd knows nothing of it.
                sh("blockdev", "--flushbufs", sd)
                f.seek(32 * MiB)
                assert f.read(MiB) == pattern

            # The device's status and sense: a READ past its end.
            blocks = 64 * MiB // 512
            fd = os.open(sg, os.O_RDWR)
            try:
                status, sense, _ = sg_io(fd, read10(blocks, 1), data_in_len=512)
                assert status == 0x02
                assert sense_key_asc(sense)[:2] == (0x05, 0x21), sense.hex()
                # A short transfer's residual: INQUIRY asks for 255 bytes,
                # the device has fewer.
                status, _, data = sg_io(fd, bytes([0x12, 0, 0, 0, 255, 0]), data_in_len=255)
                assert status == 0 and 36 <= len(data) < 255, len(data)
                assert data[8:16].strip() == b"Linux"
            finally:
                os.close(fd)
        finally:
            mgmt("targets/scst_local/mgmt", "del_target pt")
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")


def test_dev_disk_perf_never_reads_the_device(scst):
    with scsi_debug_disk(16) as (hctl, sd, _sg):
        with open(sd, "r+b", buffering=0) as f:
            f.write(b"\xa5" * MiB)
            os.fsync(f.fileno())
        mgmt("handlers/dev_disk_perf/mgmt", f"add_device {hctl}")
        try:
            disk, _sg = local_disk(hctl, "perf")
            fd = os.open(disk, os.O_RDONLY | os.O_DIRECT)
            try:
                buf = mmap.mmap(-1, 64 << 10)
                assert os.preadv(fd, [buf], 0) == 64 << 10
                # Zeros: what the device holds never came, nor stale pages.
                assert bytes(buf) == bytes(64 << 10)
            finally:
                os.close(fd)
            # Anything else reaches the device.
            assert "scsi_debug" in sh("sg_inq", _sg).stdout
        finally:
            mgmt("targets/scst_local/mgmt", "del_target perf")
            mgmt("handlers/dev_disk_perf/mgmt", f"del_device {hctl}")


def test_device_removed_under_io(scst):
    """The exported device is deleted from the local SCSI stack while fio
    runs: the commands in flight end, the device leaves scst's devices and
    its LUN the target, nothing hangs, and the module unloads clean."""
    with scsi_debug_disk(64) as (hctl, _sd, _sg):
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        disk, sg = local_disk(hctl, "gone")
        fd = os.open(sg, os.O_RDWR)
        fio = fio_running(disk, 60)
        try:
            time.sleep(2)
            with open(f"/sys/class/scsi_device/{hctl}/device/delete", "w") as f:
                f.write("1")
            # A command now fails as for a LUN that is not there, unless
            # the LUN left the initiator's view first.
            try:
                status, sense, _ = sg_io(fd, read10(0, 1), data_in_len=512)
                assert status == 0x02
                assert sense_key_asc(sense)[:2] == (0x05, 0x25), sense.hex()
            except (OSError, AssertionError) as e:
                assert not os.path.exists(os.path.join(ROOT, "devices", hctl)), e
            for _ in range(200):
                if not os.path.exists(os.path.join(ROOT, "devices", hctl)):
                    break
                time.sleep(0.1)
            assert not os.path.exists(os.path.join(ROOT, "devices", hctl))
            assert set(os.listdir(os.path.join(ROOT, "targets/scst_local/gone/luns"))) == \
                {"mgmt"}
            # fio's commands all ended: it stops at its first error.
            fio.wait(timeout=60)
        finally:
            os.close(fd)
            kill_fio(fio)
        rc, _ = refused("handlers/dev_disk/mgmt", f"del_device {hctl}")
        assert rc == errno.EINVAL
        mgmt("targets/scst_local/mgmt", "del_target gone")


def test_read_only_lun_and_mode_select_for_others(scst):
    """A read-only LUN refuses the device's writes before they reach it;
    MODE SELECT of one initiator is announced to the other (MODE
    PARAMETERS CHANGED): the device sees one nexus, the target's, and
    cannot tell them apart."""
    with scsi_debug_disk(16) as (hctl, _sd, _sg):
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            (_, sg_a), (_, sg_b) = local_sessions(hctl, "two", "a", "b")
            a = os.open(sg_a, os.O_RDWR)
            b = os.open(sg_b, os.O_RDWR)
            try:
                # MODE SENSE (6), caching page, no block descriptors.
                status, _, page = sg_io(a, bytes([0x1a, 0x08, 0x08, 0, 64, 0]),
                                        data_in_len=64)
                assert status == 0 and len(page) >= 4 + 20, page.hex()
                caching = bytearray(page[4:4 + 2 + page[5]])
                caching[0] &= 0x3f  # PS is reserved in MODE SELECT
                params = bytes(4) + bytes(caching)
                status, sense, _ = sg_io(a, bytes([0x15, 0x10, 0, 0, len(params), 0]),
                                         data_out=params)
                assert status == 0, sense.hex()
                status, sense, _ = sg_io(b, bytes(6))
                assert status == 0x02 and sense_key_asc(sense) == (0x06, 0x2a, 0x01), \
                    sense.hex()
            finally:
                os.close(a)
                os.close(b)
            mgmt("targets/scst_local/mgmt", "del_target two")

            mgmt("targets/scst_local/mgmt", "add_target ro")
            mgmt("targets/scst_local/ro/luns/mgmt", f"add {hctl} 0 read_only=1")
            mgmt("targets/scst_local/mgmt", "add_session ro s1")
            sd, sg = devices(host_of("ro", "s1"))
            # MODE SENSE says write protected, whatever the device said.
            with open(f"/sys/block/{os.path.basename(sd)}/ro") as f:
                assert f.read().strip() == "1"
            fd = os.open(sg, os.O_RDWR)
            try:
                write10 = struct.pack(">BBIBHB", 0x2a, 0, 8, 0, 1, 0)
                status, sense, _ = sg_io(fd, write10, data_out=b"\x5a" * 512)
                if status == 0x02 and sense_key_asc(sense)[0] == 0x06:
                    status, sense, _ = sg_io(fd, write10, data_out=b"\x5a" * 512)
                assert status == 0x02 and sense_key_asc(sense)[:2] == (0x07, 0x27), \
                    sense.hex()
                status, _, data = sg_io(fd, read10(8, 1), data_in_len=512)
                assert status == 0 and data != b"\x5a" * 512
            finally:
                os.close(fd)
            mgmt("targets/scst_local/mgmt", "del_target ro")
        finally:
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")


def scsi_debug_aborts(host):
    """Commands scsi_debug was asked to abort (its error handler's abort)."""
    with open(f"/proc/scsi/scsi_debug/{host}") as f:
        return int(re.search(r"command aborts=(\d+)", f.read()).group(1))


def scsi_debug_delay(jiffies):
    """Sets how long scsi_debug holds each command; it refuses while it
    holds any (EBUSY), so retried for a while."""
    for _ in range(100):
        try:
            with open("/sys/bus/pseudo/drivers/scsi_debug/delay", "w") as f:
                f.write(str(jiffies))
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.2)
    raise AssertionError("scsi_debug kept commands")


def test_lun_reset_aborts_at_the_device(scst):
    """A LUN RESET from the initiator aborts the command the device holds
    (through the SCSI error handler), rather than wait for the device."""
    with scsi_debug_disk(16) as (hctl, _sd, _sg):
        host = hctl.split(":")[0]
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            _disk, sg = local_disk(hctl, "tm")
            before = scsi_debug_aborts(host)
            # 20 s at the guest's HZ of 250: within the pass-through timeout.
            scsi_debug_delay(5000)
            ended = []

            def held_read():
                fd = os.open(sg, os.O_RDWR)
                try:
                    sg_io(fd, read10(0, 8), data_in_len=4096)
                except (OSError, AssertionError):
                    pass
                finally:
                    os.close(fd)
                    ended.append(time.monotonic())

            reader = threading.Thread(target=held_read)
            reader.start()
            for _ in range(100):
                if int(read(f"devices/{hctl}/active_commands")) > 0:
                    break
                time.sleep(0.1)
            assert int(read(f"devices/{hctl}/active_commands")) > 0
            assert sh("sg_reset", "-d", sg, check=False).returncode == 0
            reader.join(timeout=60)
            assert ended, "the held READ never ended"
            assert scsi_debug_aborts(host) > before
            scsi_debug_delay(1)
            # The device serves the initiator again.
            fd = os.open(sg, os.O_RDWR)
            try:
                status, _, _ = sg_io(fd, bytes(6))
                if status == 0x02:
                    status, _, _ = sg_io(fd, bytes(6))
                assert status == 0
            finally:
                os.close(fd)
        finally:
            scsi_debug_delay(1)
            with contextlib.suppress(Exception):
                mgmt("targets/scst_local/mgmt", "del_target tm")
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")


def test_dev_tape_through_iscsi(handlers):
    """The reference tape handler's drive, as the guest's SCSI stack sees it
    through scst_local, passed through dev_tape to iSCSI: on the
    initiator's st, tar writes two files with filemarks and reads them
    back, spacing over the filemark."""
    sh("modprobe", "st")
    handlers("vtape", fresh("/tmp/pt-tape.cart"), binary=TAPE)
    export_tape("vtape", target="local", session="s1")
    hctl = f"{host_of('local', 's1').removeprefix('host')}:0:0:0"
    iqn = "iqn.2026-12.org.scst-rs:pt-tape"
    mgmt("handlers/dev_tape/mgmt", f"add_device {hctl}")
    try:
        assert read(f"devices/{hctl}/type").startswith("1")
        with iscsi_export(iqn, hctl), open_iscsi_login(iqn) as scsi_devices:
            nst = device_of(scsi_devices, "scsi_tape/nst*[0-9]")
            assert nst, "no st device after login"
            sh("udevadm", "settle", check=False)
            a = tree("/tmp/pt-tape-a", 3, 5)
            b = tree("/tmp/pt-tape-b", 4, 3)
            sh("tar", "-cf", nst, "-C", "/tmp/pt-tape-a", ".")
            sh("tar", "-cf", nst, "-C", "/tmp/pt-tape-b", ".")
            assert "File number=2, block number=0" in mt(nst, "status").stdout
            mt(nst, "rewind")
            for d in ("/tmp/pt-tape-oa", "/tmp/pt-tape-ob"):
                sh("rm", "-rf", d)
                os.makedirs(d)
            sh("tar", "-xf", nst, "-C", "/tmp/pt-tape-oa")
            assert sums_of("/tmp/pt-tape-oa") == a
            mt(nst, "fsf", "1")
            assert "File number=1, block number=0" in mt(nst, "status").stdout
            sh("tar", "-xf", nst, "-C", "/tmp/pt-tape-ob")
            assert sums_of("/tmp/pt-tape-ob") == b
    finally:
        # The device holds scst_local's module, scst.ko itself, until it
        # goes.
        mgmt("handlers/dev_tape/mgmt", f"del_device {hctl}")
        mgmt("targets/scst_local/mgmt", "del_target local")


def test_libiscsi_on_scsi_debug_directly_and_through_dev_disk(scst):
    """libiscsi's SCSI suites on scsi_debug through its own sg node, then
    through dev_disk over iSCSI: every test the device passes by itself
    passes through the target. What fails directly is scsi_debug's own
    (named in the table, not counted against the target)."""
    suites = None if os.environ.get("PASSTHROUGH_LIBISCSI") == "all" else LIBISCSI_SLICE
    sh("ip", "link", "set", "lo", "up")
    with scsi_debug_disk(64) as (hctl, _sd, sg):
        direct = libiscsi_table(sg, "passthrough-direct.txt", suites=suites)
        iqn = "iqn.2026-12.org.scst-rs:pt-disk"
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            with iscsi_export(iqn, hctl):
                through = libiscsi_table(f"iscsi://127.0.0.1/{iqn}/0",
                                         "passthrough-iscsi.txt", suites=suites)
        finally:
            mgmt("targets/iscsi/mgmt", f"del_target {iqn}")
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")
    side_by_side("passthrough-libiscsi.md", "libiscsi on scsi_debug: directly, and through "
                 "dev_disk over iSCSI",
                 "Skips count as not passed. A test that does not pass directly is "
                 "scsi_debug's own.",
                 {"scsi_debug (sg)": direct, "dev_disk over iSCSI": through})
    assert len(through) >= (10 if suites else 40), "too few tests ran"
    worse = sorted(t for t, v in direct.items()
                   if v == "passed" and through.get(t) != "passed" and t not in SCSI_DEBUG_OWN)
    assert not worse, f"pass directly, not through dev_disk: {worse}"


def test_large_commands_through_iscsi(scst):
    """A command of several bios' worth of pages (4 MiB: the target's own
    pages, 1024 of them) reaches the device whole: written through the
    target, read back from the device's own sd and through the target.
    (Past the device's 2048 segments a command would go through a copy;
    the kernel initiator here sends no command that large.)"""
    sh("ip", "link", "set", "lo", "up")
    with scsi_debug_disk(64) as (hctl, sd, _sg):
        iqn = "iqn.2026-12.org.scst-rs:pt-large"
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            with iscsi_export(iqn, hctl), open_iscsi_login(iqn) as scsi_devices:
                sg = device_of(scsi_devices, "scsi_generic/sg*")
                assert sg, "no sg node after login"
                fd = os.open(sg, os.O_RDWR)
                try:
                    lba = 2048
                    for size in (4 * MiB,):
                        data = os.urandom(size)
                        write10 = struct.pack(">BBIBHB", 0x2a, 0, lba, 0, size // 512, 0)
                        status, sense, _ = sg_io(fd, write10, data_out=data, timeout_ms=120000)
                        if status == 0x02 and sense_key_asc(sense)[0] == 0x06:
                            status, sense, _ = sg_io(fd, write10, data_out=data,
                                                     timeout_ms=120000)
                        assert status == 0, sense.hex()
                        sh("blockdev", "--flushbufs", sd)
                        with open(sd, "rb", buffering=0) as f:
                            f.seek(lba * 512)
                            assert f.read(size) == data, size
                        status, sense, back = sg_io(fd, read10(lba, size // 512),
                                                    data_in_len=size, timeout_ms=120000)
                        assert status == 0 and back == data, (size, sense.hex())
                        lba += size // 512
                finally:
                    os.close(fd)
        finally:
            with contextlib.suppress(Exception):
                mgmt("targets/iscsi/mgmt", f"del_target {iqn}")
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")


def test_device_resets_during_io(scst):
    """LUN resets from the initiator while fio writes and verifies through
    dev_disk: the commands they abort at the device are retried by the
    initiator's sd, and nothing written is lost."""
    with scsi_debug_disk(64) as (hctl, _sd, _sg):
        mgmt("handlers/dev_disk/mgmt", f"add_device {hctl}")
        try:
            disk, sg = local_disk(hctl, "rst")
            fio = subprocess.Popen(
                ["fio", "--name=rst", f"--filename={disk}", "--direct=1", "--ioengine=libaio",
                 "--rw=randwrite", "--bs=4k", "--iodepth=16", f"--size={16 * MiB}",
                 "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                for _ in range(2):
                    time.sleep(1.5)
                    assert sh("sg_reset", "-d", sg, check=False).returncode == 0
                out, _ = fio.communicate(timeout=600)
            finally:
                if fio.poll() is None:
                    fio.kill()
                    fio.wait()
            # verify_fatal: any block read back wrong fails fio.
            assert fio.returncode == 0, out
        finally:
            with contextlib.suppress(Exception):
                mgmt("targets/scst_local/mgmt", "del_target rst")
            mgmt("handlers/dev_disk/mgmt", f"del_device {hctl}")
