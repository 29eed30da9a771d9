# SPDX-License-Identifier: GPL-2.0
"""scst_local end to end: LUNs served from files, block devices and nullio
to Linux's own SCSI stack, driven with dd, sg3_utils, fio, mkfs/fsck and
libiscsi's iscsi-test-cu."""

import glob
import hashlib
import os
import subprocess
import time

import pytest

from conftest import (NEEDS_ISCSI, ROOT, SCRATCH, SG_IO_LIMITED, SKIPS_NEEDING_CONFIG,
                      atomic_scsi_debug_disk, backing_file, devices, dmesg_since, host_of,
                      iscsi_test_cu, libiscsi_suite, libiscsi_test, local_sessions, loop_device,
                      mark_dmesg, mgmt, read, sg_io, sh, slow_null_blk, write)



def rescan(host):
    with open(f"/sys/class/scsi_host/{host}/scan", "w") as f:
        f.write("- - -")
    sh("udevadm", "settle", check=False)


def lun_disk(handler, dev, params, target="t1", session="s1", lun=0):
    mgmt(f"handlers/{handler}/mgmt", f"add_device {dev} {params}")
    mgmt("targets/scst_local/mgmt", f"add_target {target}")
    mgmt(f"targets/scst_local/{target}/luns/mgmt", f"add {dev} {lun}")
    mgmt("targets/scst_local/mgmt", f"add_session {target} {session}")
    return devices(host_of(target, session), lun)


def sense_of(out):
    return out.lower()


def test_fully_provisioned_lun_refuses_write_same_unmap(scst):
    """libiscsi's UnmapVPD on a LUN that is not thin: VPD B2h reports
    LBPWS and LBPWS10 zero, so WRITE SAME with UNMAP must fail (INVALID
    FIELD IN CDB) rather than succeed as a plain write."""
    path = backing_file("thick", 16 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    for suite in ["WriteSame10", "WriteSame16"]:
        ok, out = libiscsi_test(sg, f"SCSI.{suite}.UnmapVPD")
        assert ok, out
    r = sh("sg_write_same", "-v", "--unmap", "--lba=0", "--num=1", sg, check=False)
    # 5: ILLEGAL REQUEST (sg3_utils' exit status for it).
    assert r.returncode == 5 and "invalid field in cdb" in (r.stdout + r.stderr).lower(), r


def test_write_same_32(scst):
    """WRITE SAME (32), the variable-length CDB, as sg_write_same sends
    it: one block's data over a range, and UNMAP on a thin LUN."""
    path = backing_file("ws32", 4 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}; thin_provisioned=1")
    sh("sg_turs", sg, check=False)
    block = bytes(range(256)) * 2
    with open("/tmp/ws32-block", "wb") as f:
        f.write(block)
    sh("sg_write_same", "--32", "--in=/tmp/ws32-block", "--lba=8", "--num=16", sg)
    with open(path, "rb") as f:
        f.seek(8 * 512)
        assert f.read(16 * 512) == block * 16
        assert f.read(512) == bytes(512), "written past the range"
    sh("sg_write_same", "--32", "--unmap", "--lba=8", "--num=8", sg)
    with open(path, "rb") as f:
        f.seek(8 * 512)
        assert f.read(8 * 512) == bytes(8 * 512)
        assert f.read(512) == block


def test_read_defect_data(scst):
    """READ DEFECT DATA (10) and (12): an empty list, not a skip."""
    path = backing_file("defects", 16 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    for suite in ["ReadDefectData10", "ReadDefectData12"]:
        ok, out = libiscsi_test(sg, f"SCSI.{suite}.Simple")
        assert ok, out


def test_fileio_round_trip(scst):
    path = backing_file("rt", 64 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    inq = sh("sg_inq", sg).stdout
    assert "SCST_FIO" in inq and "disk1" in inq
    data = os.urandom(4 << 20)
    with open("/tmp/pattern", "wb") as f:
        f.write(data)
    sh("dd", "if=/tmp/pattern", f"of={sd}", "conv=nocreat", "bs=64k", "oflag=direct")
    sh("dd", f"if={sd}", "of=/tmp/back", "bs=64k", "count=64", "iflag=direct")
    with open("/tmp/back", "rb") as f:
        assert f.read() == data
    with open(path, "rb") as f:
        assert f.read(len(data)) == data
    sessions = os.path.join(ROOT, "targets/scst_local/t1/sessions/s1")
    assert int(open(os.path.join(sessions, "commands")).read()) > 64
    assert read("devices/disk1/filename") == path + "\n[key]\n"
    assert os.path.islink(os.path.join(ROOT, "targets/scst_local/t1/luns/0/device"))
    assert glob.glob(os.path.join(ROOT, "devices/disk1/exported/export*"))


def test_lun_changes_rescan_the_host(scst):
    """A LUN added to the target of a live session appears on its SCSI host
    by itself (as tcm_loop's do), and a removed one goes; the LUN that
    stayed keeps working."""
    path = backing_file("rescan", 16 << 20)
    sd, _ = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    host = host_of("t1", "s1")
    mgmt("handlers/vdisk_nullio/mgmt", "add_device null5 size_mb=16")
    mgmt("targets/scst_local/t1/luns/mgmt", "add null5 5")
    _, sg5 = devices(host, 5)
    assert "null5" in sh("sg_inq", sg5).stdout
    mgmt("targets/scst_local/t1/luns/mgmt", "del 5")
    lun5 = f"/sys/class/scsi_host/{host}/device/target*:0:0/*:0:0:5"
    for _ in range(100):
        if not glob.glob(lun5):
            break
        time.sleep(0.1)
    assert not glob.glob(lun5), "the removed LUN's device stayed"
    sh("udevadm", "settle", check=False)
    sh("dd", f"if={sd}", "of=/dev/null", "bs=64k", "count=16", "iflag=direct")


def test_sg3_utils(scst):
    path = backing_file("sg", 32 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}; thin_provisioned=1")
    pages = sh("sg_vpd", "-p", "0", sg).stdout.lower()
    for name in ["unit serial number", "device identification", "extended inquiry",
                 "block limits", "block device characteristics", "logical block provisioning"]:
        assert name in pages, pages
    for page in ["0x80", "0x83", "0x86", "0xb0", "0xb1", "0xb2"]:
        r = sh("sg_vpd", "-p", page, sg, check=False)
        assert r.returncode == 0, f"VPD {page}: {r.stderr}"
    assert "Unit serial number" in sh("sg_vpd", "-p", "sn", sg).stdout
    cap = sh("sg_readcap", "-l", sg).stdout
    assert "Number of logical blocks=65536" in cap and "lbpme=1" in cap
    assert "0000000000000000" in sh("sg_luns", sg).stdout
    ops = sh("sg_opcodes", sg).stdout
    assert "Read(16)" in ops and "Unmap" in ops
    assert sh("sg_opcodes", "--tmf", sg).returncode == 0
    # Mode pages, current and changeable.
    assert "Caching" in sh("sg_modes", "-a", sg).stdout
    # WRITE SAME with data, then read it back.
    sh("sg_write_same", "--ff", "--lba=100", "--num=8", sg)
    with open(path, "rb") as f:
        f.seek(100 * 512)
        assert f.read(8 * 512) == b"\xff" * 8 * 512
    # UNMAP punches holes: the sparse file shrinks.
    sh("dd", "if=/dev/urandom", f"of={sd}", "conv=nocreat", "bs=1M", "count=8", "oflag=direct")
    before = os.stat(path).st_blocks
    sh("sg_unmap", "--force", "--lba=0", "--num=16384", sg)
    after = os.stat(path).st_blocks
    assert after < before - 8000, (before, after)
    # GET LBA STATUS sees the hole.
    assert "deallocated" in sh("sg_get_lba_status", "--lba=0", sg).stdout.lower()


def test_invalid_commands_get_sense(scst):
    path = backing_file("bad", 8 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    # Unknown opcode: INVALID COMMAND OPERATION CODE.
    r = sh("sg_raw", "-v", sg, "c5", "00", "00", "00", "00", "00", check=False)
    assert r.returncode != 0 and "invalid command operation code" in sense_of(r.stderr + r.stdout)
    # READ(10) past the end: LBA OUT OF RANGE.
    r = sh("sg_raw", "-r", "512", sg, "28", "00", "00", "ff", "ff", "ff", "00", "00", "01", "00", check=False)
    assert "logical block address out of range" in sense_of(r.stderr + r.stdout)
    # A reserved bit: INVALID FIELD IN CDB with the field pointer.
    r = sh("sg_raw", "-v", sg, "00", "00", "00", "10", "00", "00", check=False)
    text = sense_of(r.stderr + r.stdout)
    assert "invalid field in cdb" in text and "byte 3" in text
    # NACA (no ACA here): refused at the CONTROL byte, the core's own
    # commands (REPORT LUNS) included.
    r = sh("sg_raw", "-v", sg, "00", "00", "00", "00", "00", "04", check=False)
    text = sense_of(r.stderr + r.stdout)
    assert "invalid field in cdb" in text and "byte 5 bit 2" in text, text
    r = sh("sg_raw", "-v", "-r", "64", sg, "a0", "00", "00", "00", "00", "00", "00", "00", "00",
           "40", "00", "04", check=False)
    text = sense_of(r.stderr + r.stdout)
    assert "invalid field in cdb" in text and "byte 11 bit 2" in text, text


def test_read_only_lun(scst):
    path = backing_file("ro", 8 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}")
    mgmt("targets/scst_local/mgmt", "add_target t1")
    mgmt("targets/scst_local/t1/luns/mgmt", "add disk1 0 read_only=1")
    mgmt("targets/scst_local/mgmt", "add_session t1 s1")
    sd, sg = devices(host_of("t1", "s1"))
    r = sh("sg_raw", sg, "-s", "512", "-i", "/dev/zero", "2a", "00", "00", "00", "00", "00", "00", "00", "01", "00", check=False)
    assert "write protected" in sense_of(r.stderr + r.stdout)
    assert read("targets/scst_local/t1/luns/0/read_only") == "1\n[key]\n"


def sense_key_asc(sense):
    """(key, ASC, ASCQ) of fixed or descriptor sense."""
    if sense[0] & 0x7f in (0x72, 0x73):
        return sense[1] & 0xf, sense[2], sense[3]
    return sense[2] & 0xf, sense[12], sense[13]


def cmd(fd, cdb, data_in_len=0):
    """GOOD, or the (key, ASC, ASCQ) of a CHECK CONDITION."""
    status, sense, _ = sg_io(fd, cdb, data_in_len=data_in_len)
    return "GOOD" if status == 0 else sense_key_asc(sense)


TUR = [0, 0, 0, 0, 0, 0]
PREVENT = [0x1e, 0, 0, 0, 1, 0]
ALLOW = [0x1e, 0, 0, 0, 0, 0]
EJECT = [0x1b, 0, 0, 0, 0x02, 0]
LOAD = [0x1b, 0, 0, 0, 0x03, 0]
READ10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
NO_MEDIUM = (0x2, 0x3a, 0x00)
REMOVAL_PREVENTED = (0x5, 0x53, 0x02)
MEDIUM_MAY_HAVE_CHANGED = (0x6, 0x28, 0x00)


def test_removable_medium(scst):
    """removable=1: RMB set; START STOP UNIT ejects and loads; PREVENT
    ALLOW MEDIUM REMOVAL is held per I_T nexus, and ends with the nexus
    and with a LUN reset."""
    path = backing_file("removable", 8 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}; removable=1")
    assert read("devices/disk1/removable") == "1\n[key]\n"
    (sd1, sg1), (sd2, sg2) = local_sessions("disk1", "t1", "s1", "s2")
    assert read(f"/sys/block/{os.path.basename(sd1)}/removable").strip() == "1"
    # sg3_utils' own commands for it. (Before any medium change: udev
    # answers one by opening the disk, and sd's last close of a removable
    # disk allows removal on that nexus.)
    sh("sg_prevent", "--prevent=1", sg1)
    r = sh("sg_start", "-v", "--eject", sg1, check=False)
    assert "medium removal prevented" in sense_of(r.stdout + r.stderr), r
    sh("sg_prevent", "--allow", sg1)
    fd1, fd2 = os.open(sg1, os.O_RDWR), os.open(sg2, os.O_RDWR)
    try:
        for fd in (fd1, fd2):
            while cmd(fd, TUR) != "GOOD":  # what the sd probe left pending
                pass
        # One nexus' prevention holds the medium in for every nexus.
        assert cmd(fd1, PREVENT) == "GOOD"
        assert cmd(fd2, EJECT) == REMOVAL_PREVENTED
        assert cmd(fd1, EJECT) == REMOVAL_PREVENTED
        assert cmd(fd2, ALLOW) == "GOOD", "allowing what it never prevented is no error"
        assert cmd(fd2, EJECT) == REMOVAL_PREVENTED
        assert cmd(fd1, ALLOW) == "GOOD"
        assert cmd(fd2, EJECT) == "GOOD"
        # Without a medium: NOT READY for what needs it, the rest runs.
        for fd in (fd1, fd2):
            assert cmd(fd, TUR) == NO_MEDIUM
            assert cmd(fd, READ10, 512) == NO_MEDIUM
            assert cmd(fd, [0x12, 0, 0, 0, 96, 0], 96) == "GOOD"
        # Loading with removal prevented is refused too.
        assert cmd(fd1, PREVENT) == "GOOD"
        assert cmd(fd2, LOAD) == REMOVAL_PREVENTED
        assert cmd(fd1, ALLOW) == "GOOD"
        assert cmd(fd2, LOAD) == "GOOD"
        # The other nexus learns the medium may have changed; the loader
        # does not.
        assert cmd(fd1, TUR) == MEDIUM_MAY_HAVE_CHANGED
        assert cmd(fd1, TUR) == "GOOD"
        assert cmd(fd2, TUR) == "GOOD"
        assert cmd(fd1, READ10, 512) == "GOOD"

        # Nexus loss ends that nexus' prevention.
        assert cmd(fd2, PREVENT) == "GOOD"
        assert cmd(fd1, EJECT) == REMOVAL_PREVENTED
        os.close(fd2)
        fd2 = None
        mgmt("targets/scst_local/mgmt", "del_session t1 s2")
        assert cmd(fd1, EJECT) == "GOOD"
        assert cmd(fd1, LOAD) == "GOOD"

        # So does a LUN reset (sg_reset: the SCSI host's device reset).
        assert cmd(fd1, PREVENT) == "GOOD"
        sh("sg_reset", "--device", sg1)
        while cmd(fd1, TUR) != "GOOD":  # the reset's unit attention
            pass
        assert cmd(fd1, EJECT) == "GOOD"
        assert cmd(fd1, LOAD) == "GOOD"
    finally:
        for fd in (fd1, fd2):
            if fd is not None:
                os.close(fd)


def test_physical_block_size(scst):
    """lb_per_pb_exp (SCST's, on by default): READ CAPACITY (16) reports
    the backing storage's physical block size, a page for a file, the
    device's own for a block device; off, one logical block per physical
    block, and the initiators hear the capacity data changed."""
    path = backing_file("physical", 8 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    assert read("devices/disk1/lb_per_pb_exp") == "1\n"
    assert read(f"/sys/block/{os.path.basename(sd)}/queue/physical_block_size").strip() == "4096"
    assert "Logical blocks per physical block exponent=3" in sh("sg_readcap", "--16", sg).stdout
    sh("udevadm", "settle", check=False)
    sh("sg_turs", sg, check=False)
    mgmt("devices/disk1/lb_per_pb_exp", "0")
    assert read("devices/disk1/lb_per_pb_exp") == "0\n[key]\n"
    r = sh("sg_turs", sg, check=False)
    assert "capacity data has changed" in sense_of(r.stdout + r.stderr), r
    assert "Logical blocks per physical block exponent=0" in sh("sg_readcap", "--16", sg).stdout
    assert write("devices/disk1/lb_per_pb_exp", "2") == 22
    with loop_device("physical-loop", 8 << 20) as dev:
        mgmt("handlers/vdisk_blockio/mgmt", f"add_device disk2 filename={dev}")
        mgmt("targets/scst_local/t1/luns/mgmt", "add disk2 1")
        rescan(host_of("t1", "s1"))
        _, sg2 = devices(host_of("t1", "s1"), 1)
        # A loop device's physical block is its logical one: 512 bytes.
        assert "Logical blocks per physical block exponent=0" in \
            sh("sg_readcap", "--16", sg2).stdout
        mgmt("targets/scst_local/mgmt", "del_target t1")
        mgmt("handlers/vdisk_blockio/mgmt", "del_device disk2")


def test_write_atomic(scst):
    """WRITE ATOMIC (16) on a blockio LUN whose block device writes
    atomically: the block limits page carries the device's atomic limits,
    the write goes down as one REQ_ATOMIC bio (scsi_debug receives its own
    WRITE ATOMIC (16)), and libiscsi's WriteAtomic16 suite passes without
    skipping. A LUN whose backend does not write atomically has no such
    command."""
    with atomic_scsi_debug_disk() as disk:
        queue = f"/sys/block/{os.path.basename(disk)}/queue"
        unit_max = int(read(f"{queue}/atomic_write_unit_max_bytes"))
        assert unit_max >= 512, "scsi_debug's disk does not write atomically"
        _, sg = lun_disk("vdisk_blockio", "disk1", f"filename={disk}")
        vpd = sh("sg_vpd", "--page=bl", sg).stdout
        assert f"Maximum atomic transfer length: {unit_max // 512}" in vpd, vpd
        # A pattern written atomically is what the disk itself holds.
        pattern = bytes(range(256)) * 16  # 8 blocks
        with open("/tmp/atomic-pattern", "wb") as f:
            f.write(pattern)
        sh("sg_raw", "-s", str(len(pattern)), "-i", "/tmp/atomic-pattern", sg,
           "9c", "00", "00", "00", "00", "00", "00", "00", "00", "10", "00", "00", "00", "08",
           "00", "00")
        # (Direct: udev's probe may have left the page cache stale.)
        got = subprocess.run(["dd", f"if={disk}", "bs=512", "skip=16", "count=8",
                              "iflag=direct", "status=none"], capture_output=True, check=True)
        assert got.stdout == pattern
        verdicts = libiscsi_suite(sg, "SCSI.WriteAtomic16")
        assert len(verdicts) == 6 and all(verdicts.values()), verdicts
        mgmt("targets/scst_local/mgmt", "del_target t1")
        mgmt("handlers/vdisk_blockio/mgmt", "del_device disk1")
    # A file does not write atomically: INVALID COMMAND OPERATION CODE.
    path = backing_file("not-atomic", 8 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk2", f"filename={path}", target="t2")
    r = sh("sg_raw", "-s", "512", "-i", "/dev/zero", sg, "9c", "00", "00", "00", "00", "00",
           "00", "00", "00", "00", "00", "00", "00", "01", "00", "00", check=False)
    assert "invalid command operation code" in sense_of(r.stdout + r.stderr), r


def test_sanitize(scst):
    """SANITIZE with sg3_utils: OVERWRITE leaves the pattern on every
    block, BLOCK ERASE deallocates them (both waited for), CRYPTOGRAPHIC ERASE is refused
    precisely; while one runs (IMMED, on a slow disk), commands get
    SANITIZE IN PROGRESS and REQUEST SENSE says so; deleting the device
    stops it at once."""
    path = backing_file("sanitize", 4 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}; thin_provisioned=1")
    sh("sg_turs", sg, check=False)
    with open("/tmp/sanitize-pattern", "wb") as f:
        f.write(b"scst")
    # --wait: without IMMED (sg_sanitize would otherwise poll once a minute).
    sh("sg_sanitize", "--quick", "--wait", "--overwrite", "--pattern=/tmp/sanitize-pattern", sg)
    with open(path, "rb") as f:
        assert f.read() == b"scst" * (1 << 20), "a block not overwritten"
    sh("sg_sanitize", "--quick", "--wait", "--block", sg)
    out = sh("sg_get_lba_status", "--lba=0", sg).stdout
    assert "deallocated" in out.lower() or " 1 " in out, out
    with open(path, "rb") as f:
        assert f.read() == bytes(4 << 20)
    r = sh("sg_sanitize", "-v", "--quick", "--crypto", sg, check=False)
    assert "invalid field in cdb" in sense_of(r.stdout + r.stderr), r
    r = sh("sg_sanitize", "-v", "--quick", "--fail", sg, check=False)
    assert "invalid field in cdb" in sense_of(r.stdout + r.stderr), r
    mgmt("targets/scst_local/mgmt", "del_target t1")
    mgmt("handlers/vdisk_fileio/mgmt", "del_device disk1")

    with slow_null_blk() as slow:
        _, sg = lun_disk("vdisk_blockio", "slow", f"filename={slow}", target="t2")
        sh("sg_turs", sg, check=False)
        sh("sg_sanitize", "--quick", "--early", "--overwrite", "--pattern=/tmp/sanitize-pattern",
           sg)
        r = sh("sg_turs", "-v", sg, check=False)
        assert "sanitize in progress" in sense_of(r.stdout + r.stderr), r
        r = sh("sg_requests", sg, check=False)
        assert "sanitize in progress" in sense_of(r.stdout + r.stderr), r
        assert "SCST" in sh("sg_inq", sg).stdout
        # Deleting the device stops the operation between two chunks.
        started = time.monotonic()
        mgmt("targets/scst_local/mgmt", "del_target t2")
        mgmt("handlers/vdisk_blockio/mgmt", "del_device slow")
        assert time.monotonic() - started < 20, "the sanitize held up the device's deletion"


def test_acl_groups(scst):
    a = backing_file("a", 8 << 20)
    b = backing_file("b", 8 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device diskA filename={a}")
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device diskB filename={b}")
    mgmt("targets/scst_local/mgmt", "add_target t1")
    mgmt("targets/scst_local/t1/luns/mgmt", "add diskA 0")
    mgmt("targets/scst_local/t1/ini_groups/mgmt", "create g1")
    mgmt("targets/scst_local/t1/ini_groups/g1/luns/mgmt", "add diskB 0")
    mgmt("targets/scst_local/t1/ini_groups/g1/initiators/mgmt", "add special*")
    assert os.path.exists(os.path.join(ROOT, "targets/scst_local/t1/ini_groups/g1/initiators/special*"))
    mgmt("targets/scst_local/mgmt", "add_session t1 plain1")
    mgmt("targets/scst_local/mgmt", "add_session t1 special1")
    _, sg_plain = devices(host_of("t1", "plain1"))
    _, sg_special = devices(host_of("t1", "special1"))
    assert "diskA" in sh("sg_inq", sg_plain).stdout
    assert "diskB" in sh("sg_inq", sg_special).stdout
    # Moving the initiator out of the group takes diskB away from it.
    # (The REPORTED LUNS DATA HAS CHANGED unit attention this raises is
    # taken by the host's own rescan, whose REPORT LUNS clears it.)
    mgmt("targets/scst_local/t1/ini_groups/g1/initiators/mgmt", "del special*")
    assert "diskA" in sh("sg_inq", sg_special).stdout


def test_unit_attentions(scst):
    a = backing_file("ua", 16 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={a}")
    sh("sg_turs", sg, check=False)  # consume anything pending
    # Resize: CAPACITY DATA HAS CHANGED, then the new capacity.
    with open(os.path.join(ROOT, "devices/disk1/size"), "w") as f:
        f.write("33554432")
    r = sh("sg_turs", sg, check=False)
    assert "capacity data has changed" in sense_of(r.stdout + r.stderr)
    assert "Number of logical blocks=65536" in sh("sg_readcap", sg).stdout
    # udev rescans the device on the capacity change (sending its own TEST
    # UNIT READY): let it finish before raising the next attention.
    sh("udevadm", "settle", check=False)
    # A new LUN raises REPORTED LUNS DATA HAS CHANGED on the existing one;
    # the host rescans by itself (its REPORT LUNS takes the attention) and
    # the new LUN appears.
    mgmt("handlers/vdisk_nullio/mgmt", "add_device null1 size_mb=8")
    mgmt("targets/scst_local/t1/luns/mgmt", "add null1 1")
    devices(host_of("t1", "s1"), 1)
    assert "0001000000000000" in sh("sg_luns", sg).stdout
    # MODE SELECT from one nexus: MODE PARAMETERS CHANGED for the others.
    mgmt("targets/scst_local/mgmt", "add_session t1 s2")
    _, sg2 = devices(host_of("t1", "s2"))
    sh("sg_turs", sg2, check=False)
    sh("udevadm", "settle", check=False)
    # Clear WCE (byte 2, bit 2 of the caching page); the mask keeps the
    # other bits as MODE SENSE reports them.
    sh("sg_wr_mode", "-p", "8", "-c", "08,12,00", "-m", "ff,ff,04", sg)
    r = sh("sg_turs", sg2, check=False)
    assert "mode parameters changed" in sense_of(r.stdout + r.stderr)


def test_bad_mgmt_lines(scst):
    a = backing_file("m", 8 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={a}")
    mgmt("targets/scst_local/mgmt", "add_target t1")
    cases = [
        ("targets/scst_local/mgmt", "add_session nosuch s1", "'nosuch' does not exist"),
        ("targets/scst_local/mgmt", "bogus t1", "unknown command"),
        ("targets/scst_local/t1/luns/mgmt", "add nodev 0", "'nodev' does not exist"),
        ("targets/scst_local/t1/luns/mgmt", "add disk1 99999", "invalid value"),
        ("targets/scst_local/t1/luns/mgmt", "add disk1 0 read_only=2", "invalid value"),
        ("targets/scst_local/t1/luns/mgmt", "add disk1 0 colour=red", "unknown parameter"),
        ("targets/scst_local/t1/luns/mgmt", "del 7", "'7' does not exist"),
        ("targets/scst_local/t1/ini_groups/mgmt", "create", "missing group name"),
        ("targets/scst_local/t1/ini_groups/mgmt", "del nog", "'nog' does not exist"),
        ("handlers/vdisk_fileio/mgmt", "add_device d2 filename=/nonexistent", "ENOENT"),
        ("handlers/vdisk_fileio/mgmt", "add_device d2 filename=relative", "absolute path"),
        ("handlers/vdisk_blockio/mgmt", f"add_device d2 filename={a}", "a block device"),
        ("handlers/vdisk_fileio/mgmt", "add_device d2", "missing filename="),
    ]
    for path, line, reason in cases:
        mark_dmesg(f"scst-test: {line}")
        rc = write(path, line)
        expected = 2 if "ENOENT" in reason else 22
        assert rc == expected, (line, rc)
        res = read("last_sysfs_mgmt_res")
        assert res.startswith(f"-{expected}"), (line, res)
        assert reason in res, (line, res)
        assert "failed" in dmesg_since(f"scst-test: {line}")
    mgmt("targets/scst_local/t1/luns/mgmt", "add disk1 0")
    assert write("targets/scst_local/t1/luns/mgmt", "add disk1 0") == 17
    assert sorted(os.listdir(os.path.join(ROOT, "targets/scst_local/t1/luns"))) == ["0", "mgmt"]


def fio(dev, bs, size="16M", verify=True, extra=()):
    args = ["fio", "--name=t", f"--filename={dev}", "--allow_file_create=0",
            "--direct=1", "--ioengine=libaio",
            "--iodepth=8", f"--bs={bs}", f"--size={size}", "--rw=randwrite",
            "--randrepeat=0", "--output-format=terse"]
    if verify:
        args += ["--verify=crc32c", "--verify_fatal=1", "--do_verify=1"]
    r = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("block_size", [512, 4096])
def test_fio_verify_fileio(scst, block_size):
    path = backing_file(f"fio{block_size}", 32 << 20)
    sd, _ = lun_disk("vdisk_fileio", "disk1", f"filename={path}; blocksize={block_size}")
    fio(sd, block_size)



def settled_active_commands(session):
    """A command is FINISHED just after its completion reaches the midlayer,
    so the last one may be counted for a moment longer; a leaked one stays."""
    deadline = time.monotonic() + 10
    while True:
        active = read(f"{session}/active_commands").strip()
        if active == "0" or time.monotonic() > deadline:
            return active
        time.sleep(0.1)


def test_queue_depth_task_set_full(scst):
    """Past max_tgt_dev_commands a nexus gets TASK SET FULL; the midlayer
    retries those commands and no write is lost."""
    path = backing_file("qd", 32 << 20)
    sd, _ = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    attr = "devices/disk1/max_tgt_dev_commands"
    assert read(attr).strip() == "64"
    for bad in ["0", "257", "x", "-1"]:
        assert write(attr, bad) == 22, bad
    assert read(attr).strip() == "64"
    assert write(attr, "1") == 0
    session = "targets/scst_local/t1/sessions/s1"
    # Eight jobs, each verifying its own 2 MiB: they overlap in the target
    # (two CPUs run their commands at once), one command may be in the set.
    fio(sd, 4096, size="2M", extra=["--numjobs=8", "--offset_increment=2M"])
    full = int(read(f"{session}/task_set_full"))
    assert full > 0, "no command was refused with TASK SET FULL"
    # One nexus alone never meets the device-wide limit: no BUSY.
    assert read(f"{session}/busy").strip() == "0"
    assert settled_active_commands(session) == "0"
    assert write(attr, "64") == 0
    before = int(read(f"{session}/task_set_full"))
    fio(sd, 4096, size="2M", extra=["--numjobs=8", "--offset_increment=2M"])
    assert int(read(f"{session}/task_set_full")) == before


@pytest.fixture
def loopdev():
    with loop_device("loop", 64 << 20) as dev:
        yield dev


@pytest.mark.parametrize("block_size", [512, 4096])
def test_fio_verify_blockio(scst, loopdev, block_size):
    sd, _ = lun_disk("vdisk_blockio", "disk1", f"filename={loopdev}; blocksize={block_size}")
    fio(sd, block_size)
    mgmt("targets/scst_local/mgmt", "del_target t1")
    mgmt("handlers/vdisk_blockio/mgmt", "del_device disk1")


@pytest.mark.parametrize("block_size", [512, 4096])
def test_fio_nullio(scst, block_size):
    # nullio keeps no data: fio checks the I/O completes, not its contents.
    sd, _ = lun_disk("vdisk_nullio", "null1", f"size_mb=64; blocksize={block_size}")
    fio(sd, block_size, verify=False)


# The guest's root is read-only; /tmp is writable.
MNT = "/tmp/scst-mnt"


def test_mkfs_fsck_blockio(scst, loopdev):
    sd, _ = lun_disk("vdisk_blockio", "disk1", f"filename={loopdev}")
    sh("mkfs.ext4", "-q", "-F", sd)
    os.makedirs(MNT, exist_ok=True)
    sh("mount", sd, MNT)
    sums = {}
    try:
        for i in range(8):
            data = os.urandom(1 << 20)
            with open(f"{MNT}/f{i}", "wb") as f:
                f.write(data)
            sums[i] = hashlib.sha256(data).hexdigest()
    finally:
        sh("umount", MNT)
    sh("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
    sh("fsck.ext4", "-f", "-n", sd)
    sh("mount", sd, MNT)
    try:
        for i, s in sums.items():
            with open(f"{MNT}/f{i}", "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == s
    finally:
        sh("umount", MNT)
    mgmt("targets/scst_local/mgmt", "del_target t1")
    mgmt("handlers/vdisk_blockio/mgmt", "del_device disk1")


def test_resets_during_io(scst):
    path = backing_file("rst", 32 << 20)
    sd, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}")
    job = subprocess.Popen(
        ["fio", "--name=t", f"--filename={sd}", "--allow_file_create=0",
         "--direct=1", "--ioengine=libaio",
         "--iodepth=16", "--bs=4k", "--size=16M", "--rw=randwrite", "--randrepeat=0",
         "--verify=crc32c", "--verify_fatal=1", "--do_verify=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    for kind in ["--device", "--target", "--device"]:
        sh("sg_reset", "--no-esc", kind, sg, check=False)
        time.sleep(1)
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 0, out
    assert settled_active_commands("targets/scst_local/t1/sessions/s1") == "0"


def test_iscsi_test_cu(scst):
    """libiscsi's conformance suites over SG_IO, table kept in the results."""
    path = backing_file("cu", 256 << 20)
    _, sg = lun_disk("vdisk_fileio", "disk1", f"filename={path}; thin_provisioned=1")
    failed, _ = iscsi_test_cu(sg, "iscsi-test-cu-scst_local.txt",
                              "SCSI.ReadDefectData10", "SCSI.ReadDefectData12",
                              allowed_skips=SKIPS_NEEDING_CONFIG | NEEDS_ISCSI)
    unexpected = failed - set(SG_IO_LIMITED)
    assert not unexpected, f"iscsi-test-cu failures: {sorted(unexpected)}"




def test_iscsi_test_cu_on_configured_luns(scst):
    """Over SG_IO, the suites the default LUN skips, each on a LUN that has
    what it needs (as test_iscsi.py does over iSCSI, which alone runs the
    tests that need sessions of their own: resets, logouts, a second
    nexus, two paths, reserved bits set in the PDU). None may skip."""
    runs = [
        ("removable=1", ["SCSI.PreventAllow.Simple", "SCSI.PreventAllow.Eject",
                         "SCSI.StartStopUnit"]),
        ("read_only=1", ["SCSI.ReadOnly"]),
        ("lb_per_pb_exp=0", ["SCSI.GetLBAStatus"]),
        # The *Reserved tests set their reserved bits by rewriting the
        # iSCSI PDU, so they run over iSCSI only, as do Reset, Readonly
        # and Reservations (and CryptoErase is not offered).
        ("", [f"SCSI.Sanitize.{t}" for t in ("BlockErase", "ExitFailureMode",
                                             "InvalidServiceAction", "Overwrite")]),
    ]
    verdicts, skipped = {}, {}
    for i, (params, suites) in enumerate(runs):
        path = backing_file(f"configured{i}", 64 << 20)
        extra = f"; {params}" if params else ""
        _, sg = lun_disk("vdisk_fileio", f"disk{i}", f"filename={path}; thin_provisioned=1{extra}",
                         target=f"t{i}")
        for suite in suites:
            verdicts.update(libiscsi_suite(sg, suite, allow_sanitize=True, skipped=skipped))
    with open(os.path.join(SCRATCH, "iscsi-test-cu-scst_local-configured.txt"), "w") as f:
        f.writelines(f"{name} {'passed' if ok else 'FAILED'}\n"
                     for name, ok in sorted(verdicts.items()))
    assert len(verdicts) == 13, verdicts
    assert not skipped or not any(skipped.values()), skipped
    assert all(verdicts.values()), verdicts
