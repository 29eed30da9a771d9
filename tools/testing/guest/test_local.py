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

from conftest import (ROOT, SG_IO_LIMITED, backing_file, devices, dmesg_since, host_of,
                      iscsi_test_cu, libiscsi_test, loop_device, mark_dmesg, mgmt, read, sh,
                      write)



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
    sh("dd", "if=/tmp/pattern", f"of={sd}", "bs=64k", "oflag=direct")
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
    sh("dd", "if=/dev/urandom", f"of={sd}", "bs=1M", "count=8", "oflag=direct")
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
    args = ["fio", "--name=t", f"--filename={dev}", "--direct=1", "--ioengine=libaio",
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
        ["fio", "--name=t", f"--filename={sd}", "--direct=1", "--ioengine=libaio",
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
                              "SCSI.ReadDefectData10", "SCSI.ReadDefectData12")
    unexpected = failed - set(SG_IO_LIMITED)
    assert not unexpected, f"iscsi-test-cu failures: {sorted(unexpected)}"


