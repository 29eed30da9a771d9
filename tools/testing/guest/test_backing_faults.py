# SPDX-License-Identifier: GPL-2.0
"""A backing store that fails under the target: a block device with a
bad region, one that fails entirely and comes back (dm-error), one that
fails on and off (dm-flakey), all under vdisk_blockio, and a full
filesystem under vdisk_fileio. The initiator gets MEDIUM ERROR or SPACE
ALLOCATION FAILED, never data it did not write; what was acknowledged
reads back once the device works again; the target keeps serving its
other LUNs. Raw iSCSI over loopback, after a real login."""

import os
import subprocess
import time

import pytest

from conftest import (SCSI_RESPONSE, backing_file, bhs, dmesg_since, iscsi_export,
                      kmemleak_report, load, loaded, mark_dmesg, mgmt, next_reply,
                      raw_full_feature, read10, sh, unload, write10)

IQN = "iqn.2026-12.org.scst-rs:backing"
INITIATOR = "iqn.2026-12.org.scst-rs:backing-client"

GOOD, CHECK_CONDITION = 0x00, 0x02
MEDIUM_ERROR = 0x03
# Additional sense codes of a failed write (WRITE ERROR) and read
# (UNRECOVERED READ ERROR).
WRITE_ERROR, READ_ERROR = 0x0C, 0x11

# The dm device: 64 MiB in 512-byte sectors.
SECTORS = 131072
LUN1 = 1 << 48


def logged_in():
    """A raw session past the new nexus' unit attention on LUN 0."""
    s, exp, _ = raw_full_feature(IQN, INITIATOR)
    s.settimeout(60)
    s.sendall(bhs(0x01, 0x80 | 0x01, itt=0x1, cmd_sn=exp, rest=bytes(16), immediate=False))
    assert next_reply(s)[0][0] & 0x3F == SCSI_RESPONSE
    return s, exp + 1


class Session:
    """A raw session with its own ITT and CmdSN counters."""

    def __init__(self):
        self.s, self.cmd_sn = logged_in()
        self.itt = 0x100

    def _next(self):
        self.itt += 1
        self.cmd_sn += 1
        return self.itt, self.cmd_sn - 1

    def write(self, lba, data, lun=0):
        """The status and sense data of a WRITE(10)."""
        hdr, rsp = write10(self.s, *self._next(), lba, data, lun=lun)
        return hdr[3], rsp[2:]

    def read(self, lba, blocks, lun=0):
        """The data, status and sense data of a READ(10)."""
        return read10(self.s, *self._next(), lba, blocks, lun=lun)

    def clear_unit_attention(self, lun):
        itt, cmd_sn = self._next()
        self.s.sendall(bhs(0x01, 0x80 | 0x01, itt=itt, cmd_sn=cmd_sn, rest=bytes(16), lun=lun,
                           immediate=False))
        assert next_reply(self.s)[0][0] & 0x3F == SCSI_RESPONSE

    def close(self):
        self.s.close()


def medium_error(status, sense, asc):
    return status == CHECK_CONDITION and (sense[2] & 0x0F, sense[12]) == (MEDIUM_ERROR, asc)


def pattern(n, size=65536):
    """64 KiB that say which write they came from."""
    return n.to_bytes(4, "big") * (size // 4)


def dm_minor(name):
    return sh("dmsetup", "info", "-c", "--noheadings", "-o", "minor", name).stdout.strip()


def dm_table(name, table):
    """Replaces the table of dm device `name` (loaded, then swapped in by
    the resume, which suspends the device around the swap)."""
    sh("dmsetup", "load", name, "--table", table)
    sh("dmsetup", "resume", name)


def remove_dm(name):
    """Removes dm device `name` if it exists, once udev and anything else
    that opened it (blkid probing the new device) let go of it."""
    if subprocess.run(["dmsetup", "info", name], capture_output=True).returncode != 0:
        return
    sh("udevadm", "settle", check=False)
    r = subprocess.run(["dmsetup", "remove", "--retry", "--noudevsync", name],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"dmsetup remove {name}: {r.stderr}"


@pytest.fixture
def dm_target(scst):
    """A dm device `scst-backing` over a loop device over a 64 MiB file,
    exported as LUN 0 through vdisk_blockio (its table is the test's),
    and a vdisk_fileio LUN 1 that never fails; yields (the loop device,
    a function that sets the dm table)."""
    path = backing_file("backing-lower", SECTORS * 512)
    loop = sh("losetup", "--find", "--show", path).stdout.strip()
    name = "scst-backing"
    remove_dm(name)
    r = subprocess.run(["dmsetup", "create", name, "--noudevsync", "--table",
                        f"0 {SECTORS} linear {loop} 0"], capture_output=True, text=True)
    assert r.returncode == 0, f"dmsetup create: {r.stderr}"
    try:
        dev = f"/dev/dm-{dm_minor(name)}"
        for _ in range(50):
            if os.path.exists(dev):
                break
            time.sleep(0.1)
        mgmt("handlers/vdisk_blockio/mgmt", f"add_device failing0 filename={dev}")
        other = backing_file("backing-other", 4 << 20)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device steady0 filename={other}")
        with iscsi_export(IQN, "failing0"):
            mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add steady0 1")
            yield loop, lambda table: dm_table(name, table)
    finally:
        # The module holds the device open until it unloads; loaded again
        # for the scst fixture.
        if loaded():
            unload()
        remove_dm(name)
        sh("losetup", "-d", loop, check=False)
        report = kmemleak_report()
        load()
    assert "[scst]" not in report, report


def other_lun_served(session, n):
    """LUN 1 (vdisk_fileio) takes a write and reads it back."""
    data = pattern(n, 4096)
    status, sense = session.write(n * 8, data, lun=LUN1)
    assert status == GOOD, f"other LUN write: {status:#x} {sense.hex()}"
    back, status, sense = session.read(n * 8, 8, lun=LUN1)
    assert status == GOOD and back == data, "other LUN read"


def test_failing_device_under_blockio(dm_target):
    """A bad region in the middle of the device (dm-error), then the
    whole device failing and coming back: writes and reads there end with
    MEDIUM ERROR (WRITE ERROR, UNRECOVERED READ ERROR) and no data;
    elsewhere, and on the other LUN, I/O goes on; once the device is back,
    what was acknowledged before reads back."""
    loop, set_table = dm_target
    # Sectors 65536-81919 (LBAs 65536-81919 at 512-byte blocks) fail.
    set_table(f"0 65536 linear {loop} 0\n65536 16384 error\n"
              f"81920 {SECTORS - 81920} linear {loop} 81920")
    session = Session()
    try:
        session.clear_unit_attention(LUN1)
        assert session.write(0, pattern(1)) == (GOOD, b"")
        assert session.write(100000, pattern(2))[0] == GOOD
        status, sense = session.write(70000, pattern(3))
        assert medium_error(status, sense, WRITE_ERROR), f"{status:#x} {sense.hex()}"
        # A write that starts in the good region and runs into the bad one.
        status, sense = session.write(65536 - 64, pattern(4))
        assert medium_error(status, sense, WRITE_ERROR), f"{status:#x} {sense.hex()}"
        data, status, sense = session.read(70000, 128)
        assert medium_error(status, sense, READ_ERROR), f"{status:#x} {sense.hex()}"
        assert data == b"", "data with a failed read"
        other_lun_served(session, 1)

        # The whole device fails: every command fails, the other LUN serves.
        set_table(f"0 {SECTORS} error")
        status, sense = session.write(0, pattern(5))
        assert medium_error(status, sense, WRITE_ERROR), f"{status:#x} {sense.hex()}"
        data, status, sense = session.read(0, 128)
        assert medium_error(status, sense, READ_ERROR) and data == b""
        other_lun_served(session, 2)

        # Back: the writes acknowledged before read back, the failed ones
        # left nothing.
        set_table(f"0 {SECTORS} linear {loop} 0")
        data, status, _ = session.read(0, 128)
        assert status == GOOD and data == pattern(1), "acknowledged write lost"
        data, status, _ = session.read(100000, 128)
        assert status == GOOD and data == pattern(2), "acknowledged write lost"
        data, status, _ = session.read(70000, 128)
        assert status == GOOD and data == bytes(65536), "a failed write reached the device"
    finally:
        session.close()


FLAKEY_SECONDS = 7


def test_flakey_device_under_blockio(dm_target):
    """dm-flakey: the device works for a second, fails every I/O for a
    second, and so on. Writes of 64 KiB go on for several periods, each
    followed by a read of an earlier acknowledged one: every command
    either succeeds or ends with MEDIUM ERROR; a read that succeeds
    returns what was written; and once the device is steady every
    acknowledged write reads back."""
    loop, set_table = dm_target
    set_table(f"0 {SECTORS} flakey {loop} 0 1 1")
    session = Session()
    acknowledged, failed_writes, failed_reads, reads = [], 0, 0, 0
    try:
        session.clear_unit_attention(LUN1)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < FLAKEY_SECONDS and n < 500:
            status, sense = session.write(n * 128, pattern(n))
            if status == GOOD:
                acknowledged.append(n)
            else:
                assert medium_error(status, sense, WRITE_ERROR), f"{status:#x} {sense.hex()}"
                failed_writes += 1
            if acknowledged:
                m = acknowledged[(n * 7) % len(acknowledged)]
                data, status, sense = session.read(m * 128, 128)
                reads += 1
                if status == GOOD:
                    assert data == pattern(m), f"write {m} read back wrong"
                else:
                    assert medium_error(status, sense, READ_ERROR), f"{status:#x} {sense.hex()}"
                    failed_reads += 1
            n += 1
        other_lun_served(session, 3)
        set_table(f"0 {SECTORS} linear {loop} 0")
        for m in acknowledged:
            data, status, _ = session.read(m * 128, 128)
            assert status == GOOD and data == pattern(m), f"acknowledged write {m} lost"
    finally:
        session.close()
    print(f"{n} writes: {len(acknowledged)} acknowledged, {failed_writes} failed;"
          f" {reads} reads, {failed_reads} failed")
    # The device did fail some commands and serve others.
    assert acknowledged and failed_writes


def test_unload_waits_for_a_device_that_holds_its_io(dm_target):
    """A device that holds its I/O (a suspended dm device): a READ sent to
    it stays in flight. rmmod closes the connection and then waits, saying
    so in the kernel log, rather than return while the bio's completion
    (the module's code) is still to run; once the device resumes, the bio
    ends and rmmod completes."""
    session = Session()
    rmmod = None
    try:
        sh("dmsetup", "suspend", "scst-backing")
        itt, cmd_sn = session._next()
        cdb = bytes([0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0])
        session.s.sendall(bhs(0x01, 0x80 | 0x40 | 0x01, itt=itt, word20=4096, cmd_sn=cmd_sn,
                              rest=cdb, immediate=False))
        time.sleep(0.5)
        mark_dmesg("scst-test: unload with I/O held")
        rmmod = subprocess.Popen(["rmmod", "scst"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        for _ in range(100):
            if "scst: unload waits for 1 commands" in dmesg_since("scst-test: unload with I/O held"):
                break
            assert rmmod.poll() is None, f"rmmod ended with the bio in flight: {rmmod.stdout.read()}"
            time.sleep(0.1)
        else:
            raise AssertionError("rmmod never said what it waits for: "
                                 + dmesg_since("scst-test: unload with I/O held"))
        assert rmmod.poll() is None, "rmmod ended with the bio in flight"
        sh("dmsetup", "resume", "scst-backing")
        out, _ = rmmod.communicate(timeout=60)
        assert rmmod.returncode == 0, out
        assert not loaded()
    finally:
        if rmmod is not None and rmmod.poll() is None:
            sh("dmsetup", "resume", "scst-backing", check=False)
            rmmod.wait(timeout=60)
        session.close()
        if not loaded():
            # For the fixtures, which tear down through sysfs.
            load()


def test_full_filesystem_under_fileio(scst):
    """vdisk_fileio on a 64 MiB file in a 16 MiB tmpfs: writes succeed
    until the filesystem is full, then fail with SPACE ALLOCATION FAILED
    WRITE PROTECT (07/27/07), not as a medium error; what was acknowledged
    reads back, and another LUN of the target is served meanwhile."""
    mnt = "/tmp/faults-full"
    os.makedirs(mnt, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "size=16m", "faults", mnt)
    try:
        path = os.path.join(mnt, "lun.img")
        with open(path, "wb") as f:
            f.truncate(64 << 20)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device full0 filename={path}")
        other = backing_file("faults-other", 4 << 20)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device other0 filename={other}")
        with iscsi_export(IQN, "full0"):
            mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add other0 1")
            s, exp = logged_in()
            try:
                chunk = 1 << 20
                written = []
                failure = None
                for i in range(40):
                    data = bytes([i + 1]) * chunk
                    hdr, rsp = write10(s, 0x100 + i, exp, i * 2048, data)
                    exp += 1
                    if hdr[3] != 0:
                        failure = (hdr[3], rsp[2:])
                        break
                    written.append(i)
                assert failure, "40 MiB written into a 16 MiB filesystem"
                status, sense = failure
                assert status == 2, f"status {status:#x}"
                assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x07, 0x27, 0x07), sense.hex()
                print(f"{len(written)} MiB acknowledged before the filesystem was full")
                assert len(written) >= 8
                # Acknowledged data reads back.
                for i in written[:: max(1, len(written) // 4)]:
                    data, status, _ = read10(s, 0x200 + i, exp, i * 2048, 2048)
                    exp += 1
                    assert status == 0 and data == bytes([i + 1]) * chunk, f"MiB {i} lost"
                # The other LUN is served (past its new nexus' unit
                # attention): a write and its read-back.
                s.sendall(bhs(0x01, 0x80 | 0x01, itt=0x2FF, cmd_sn=exp, rest=bytes(16),
                              lun=1 << 48, immediate=False))
                exp += 1
                assert next_reply(s)[0][0] & 0x3F == SCSI_RESPONSE
                hdr, _ = write10(s, 0x300, exp, 0, b"\x5a" * 4096, lun=1 << 48)
                exp += 1
                assert hdr[3] == 0, f"other LUN write status {hdr[3]:#x}"
                data, status, _ = read10(s, 0x301, exp, 0, 8, lun=1 << 48)
                assert status == 0 and data == b"\x5a" * 4096
            finally:
                s.close()
    finally:
        # The module holds the file open until it unloads.
        if loaded():
            unload()
        sh("umount", mnt, check=False)
        report = kmemleak_report()
        load()
    assert "[scst]" not in report, report
