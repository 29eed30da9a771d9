# SPDX-License-Identifier: GPL-2.0
"""Reservations: persistent reservations (SPC-4) and RESERVE/RELEASE
(SPC-2), through libiscsi's suites over iSCSI with two initiators, sg3_utils
on two scst_local sessions, and an initiator fenced by PREEMPT AND ABORT
while it writes (two scst_local sessions, and two iSCSI initiators)."""

import contextlib
import glob
import mmap
import os
import re
import struct
import subprocess
import time

import pytest

from conftest import (backing_file, devices, host_of, iscsi_daemon, iscsi_export, kill_fio,
                      libiscsi_suite, load, local_sessions, mgmt, openable, read, sg_io, sh,
                      unload)
from peers import lio_target, tgt_target

IQN = "iqn.2026-11.org.scst-rs:pr"

# Every test of libiscsi's reservation suites; each must pass without
# skipping itself, except those named in NOT_PASSING with the reason.
LIBISCSI_SUITES = ["SCSI.PrinReadKeys", "SCSI.PrinServiceactionRange",
                   "SCSI.PrinReportCapabilities", "SCSI.ProutRegister", "SCSI.ProutReserve",
                   "SCSI.ProutClear", "SCSI.ProutPreempt", "SCSI.Reserve6"]
NOT_PASSING = {}


@pytest.fixture
def iscsi_lun(scst):
    """A fileio LUN 0 on an enabled iSCSI target that any initiator may
    log in to."""
    path = backing_file("pr", 64 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}")
    with iscsi_export(IQN, "disk1"):
        yield f"iscsi://127.0.0.1/{IQN}/0"


def reservation_verdicts(url):
    """{test: passed without skipping itself} of the reservation suites."""
    verdicts = {}
    for suite in LIBISCSI_SUITES:
        found = libiscsi_suite(url, suite)
        assert found, f"{suite}: no test ran on {url}"
        verdicts.update(found)
    return verdicts


def test_libiscsi_reservation_suites(iscsi_lun):
    """libiscsi's persistent reservation and RESERVE(6) suites, two
    initiators over iSCSI, beside LIO and tgt in the same guest; a test
    that skips itself counts as not passed. The table is kept in the
    scratch directory (reservations-peers.md)."""
    ours = reservation_verdicts(iscsi_lun)
    mgmt("targets/iscsi/enabled", "0")
    with lio_target(backing_file("peer-lio", 64 << 20)) as url:
        lio = reservation_verdicts(url)
    with tgt_target(backing_file("peer-tgt", 64 << 20)) as url:
        tgt = reservation_verdicts(url)
    verdict = lambda table, name: ("passed" if table[name] else "NOT PASSED") \
        if name in table else "-"
    table = os.path.join(os.environ.get("SCST_SCRATCH", "/tmp"), "reservations-peers.md")
    with open(table, "w") as f:
        f.write("# libiscsi reservation suites: scst-rs, LIO and tgt in one guest run\n\n")
        for label, t in [("scst-rs", ours), ("LIO", lio), ("tgt", tgt)]:
            f.write(f"- {label}: {sum(t.values())} passed of {len(t)}\n")
        f.write("\n| test | scst-rs | LIO | tgt |\n|---|---|---|---|\n")
        for name in sorted(set(ours) | set(lio) | set(tgt)):
            f.write(f"| {name} | {verdict(ours, name)} | {verdict(lio, name)} | "
                    f"{verdict(tgt, name)} |\n")
    print(open(table).read())
    failed = {name for name, ok in ours.items() if not ok}
    assert failed == set(NOT_PASSING), sorted(failed)
    assert len(ours) >= 27
    assert len(lio) == len(ours) and len(tgt) == len(ours), "a peer's run was cut short"


PR_DIR = "/var/lib/scst/pr"


def forget_saved(dev):
    for suffix in ("", ".1"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(PR_DIR, dev + suffix))


def add_two_sessions(path):
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}")
    return local_sessions("disk1", "t1", "nodeA", "nodeB")


@pytest.fixture
def two_sessions(scst):
    """One fileio LUN seen by two scst_local sessions (two I_T nexuses):
    ((sd, sg) of the first, (sd, sg) of the second)."""
    forget_saved("disk1")
    yield add_two_sessions(backing_file("pr-local", 64 << 20))
    for s in ("nodeA", "nodeB"):
        mgmt("targets/scst_local/mgmt", f"del_session t1 {s}")
    forget_saved("disk1")


def sg_persist(*args, check=True):
    return sh("sg_persist", "--no-inquiry", *args, check=check)


def keys(sg):
    """The registered keys READ KEYS lists (one per line after the
    generation line)."""
    out = sg_persist("--in", "--read-keys", sg).stdout
    return re.findall(r"^\s+(0x[0-9a-f]+)\s*$", out, re.M)


def direct_write(sd, offset, data):
    """Writes `data` at byte `offset` of `sd`, bypassing the page cache;
    whether it succeeded."""
    fd = os.open(sd, os.O_WRONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, len(data))
        buf.write(data)
        return os.pwritev(fd, [buf], offset) == len(data)
    except OSError:
        return False
    finally:
        os.close(fd)
        # Closing a disk opened for writing makes udev probe it, through
        # the same I_T_L nexus: its reads would take the unit attention a
        # test waits for next.
        sh("udevadm", "settle", check=False)


def direct_read(sd, offset, length):
    fd = os.open(sd, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, length)
        n = os.preadv(fd, [buf], offset)
        return bytes(buf[:n])
    except OSError:
        return None
    finally:
        os.close(fd)


def test_sg_persist_two_initiators(two_sessions):
    """sg_persist's every service action between two I_T nexuses: keys,
    reservations and the access they leave, full status, preemption with
    its unit attention, clear; APTPL refused where nothing persists."""
    (sd_a, sg_a), (sd_b, sg_b) = two_sessions
    block = b"\x5a" * 4096
    sg_persist("--out", "--register", "--param-sark=0xa1", sg_a)
    sg_persist("--out", "--register", "--param-sark=0xb2", sg_b)
    assert keys(sg_a) == ["0xa1", "0xb2"]
    caps = sg_persist("--in", "--report-capabilities", sg_a).stdout
    assert "Compatible Reservation Handling(CRH): 1" in caps, caps
    assert "Persist Through Power Loss Capable(PTPL_C): 1" in caps, caps
    assert "Persist Through Power Loss Active(PTPL_A): 0" in caps, caps

    # WRITE EXCLUSIVE held by A: B reads, B's writes conflict.
    sg_persist("--out", "--reserve", "--param-rk=0xa1", "--prout-type=1", sg_a)
    res = sg_persist("--in", "--read-reservation", sg_b).stdout
    assert "Key=0xa1" in res and "Write Exclusive" in res, res
    assert direct_read(sd_b, 0, 4096) is not None
    assert not direct_write(sd_b, 0, block)
    assert direct_write(sd_a, 0, block)
    conflict = sh("sg_raw", "-r", "512", sg_b, "28", "00", "00", "00", "00", "00", "00", "00",
                  "01", "00", check=False)
    assert conflict.returncode == 0, conflict.stderr
    conflict = sh("sg_raw", "-s", "512", "-i", "/dev/zero", sg_b, "2a", "00", "00", "00", "00",
                  "00", "00", "00", "01", "00", check=False)
    assert "Reservation Conflict" in conflict.stdout + conflict.stderr, conflict

    full = sg_persist("--in", "--read-full-status", sg_a).stdout
    assert "Key=0xa1" in full and "Key=0xb2" in full, full
    assert "reservation holder" in full, full
    assert "nodea" in full.lower() and "nodeb" in full.lower(), full

    # B preempts A: A's registration goes, A hears of it, B holds.
    sg_persist("--out", "--preempt", "--param-rk=0xb2", "--param-sark=0xa1",
               "--prout-type=3", sg_b)
    assert keys(sg_b) == ["0xb2"]
    tur = sh("sg_turs", "-v", sg_a, check=False)
    assert "Registrations preempted" in tur.stdout + tur.stderr, tur
    res = sg_persist("--in", "--read-reservation", sg_a).stdout
    assert "Key=0xb2" in res and "Exclusive Access" in res, res
    assert direct_read(sd_a, 0, 4096) is None
    assert direct_read(sd_b, 0, 4096) == block

    # A is not registered: its service actions conflict; REGISTER works.
    r = sg_persist("--out", "--reserve", "--param-rk=0xa1", "--prout-type=1", sg_a, check=False)
    assert r.returncode != 0 and "onflict" in r.stdout + r.stderr, r
    sg_persist("--out", "--register", "--param-sark=0xa3", sg_a)
    # Registered but not the holder: RELEASE does nothing.
    sg_persist("--out", "--release", "--param-rk=0xa3", "--prout-type=3", sg_a)
    assert "Key=0xb2" in sg_persist("--in", "--read-reservation", sg_a).stdout
    # Releasing with the wrong type is refused.
    r = sg_persist("--out", "--release", "--param-rk=0xb2", "--prout-type=1", sg_b, check=False)
    assert r.returncode != 0, r

    # CLEAR: everything goes; A hears RESERVATIONS PREEMPTED.
    sg_persist("--out", "--clear", "--param-rk=0xb2", sg_b)
    tur = sh("sg_turs", "-v", sg_a, check=False)
    assert "Reservations preempted" in tur.stdout + tur.stderr, tur
    assert keys(sg_a) == []
    assert "no reservation" in sg_persist("--in", "--read-reservation", sg_a).stdout.lower()
    assert direct_write(sd_a, 0, block)


def test_reserve6_and_resets(two_sessions):
    """RESERVE(6)/RELEASE(6): the holder alone has access; another nexus'
    RELEASE does nothing; a LUN reset or the holder's session ending frees
    it; persistent registrations refuse it."""
    (sd_a, sg_a), (sd_b, sg_b) = two_sessions

    def raw(sg, *cdb):
        r = sh("sg_raw", sg, *cdb, check=False)
        return r.stdout + r.stderr

    reserve6 = ("16", "00", "00", "00", "00", "00")
    release6 = ("17", "00", "00", "00", "00", "00")
    tur = ("00", "00", "00", "00", "00", "00")
    inquiry = ("12", "00", "00", "00", "24", "00")
    assert "Good" in raw(sg_a, *reserve6) or "good" in raw(sg_a, *tur)
    assert "Reservation Conflict" in raw(sg_b, *reserve6)
    assert "Reservation Conflict" in raw(sg_b, *tur)
    assert "Reservation Conflict" not in raw(sg_b, "-r", "36", *inquiry)
    raw(sg_b, *release6)
    assert "Reservation Conflict" in raw(sg_b, *tur)
    assert "Reservation Conflict" not in raw(sg_a, *tur)
    # A LUN reset ends it.
    sh("sg_reset", "--device", sg_a)
    sh("sg_turs", sg_a, check=False)
    sh("sg_turs", sg_b, check=False)
    assert "Reservation Conflict" not in raw(sg_b, *reserve6)
    assert "Reservation Conflict" in raw(sg_a, *tur)
    # The holder's nexus ending ends it.
    mgmt("targets/scst_local/mgmt", "del_session t1 nodeB")
    assert "Reservation Conflict" not in raw(sg_a, *reserve6)
    assert "Reservation Conflict" not in raw(sg_a, *release6)
    mgmt("targets/scst_local/mgmt", "add_session t1 nodeB")
    sd_b, sg_b = devices(host_of("t1", "nodeB"))
    sh("sg_turs", sg_b, check=False)
    # With a registration, RESERVE conflicts (SPC-4 5.13.3).
    sg_persist("--out", "--register", "--param-sark=0x1", sg_a)
    assert "Reservation Conflict" in raw(sg_b, *reserve6)
    assert "Reservation Conflict" in raw(sg_a, *reserve6)
    sg_persist("--out", "--register", "--param-rk=0x1", sg_a)
    assert "Reservation Conflict" not in raw(sg_b, *reserve6)
    raw(sg_b, *release6)


def fence_a_writer(sd_a, sg_a, sd_b, sg_b):
    """Two nodes: A writes under fio at QD32 while holding a WRITE
    EXCLUSIVE - REGISTRANTS ONLY reservation; B preempts and aborts it. Once
    the PREEMPT AND ABORT completes, nothing A sends lands: B overwrites
    the region, A's writes in flight and those it tries after fail, and B
    reads back only its own data."""
    size = 8 << 20
    sg_persist("--out", "--register", "--param-sark=0xaa", sg_a)
    sg_persist("--out", "--register", "--param-sark=0xbb", sg_b)
    sg_persist("--out", "--reserve", "--param-rk=0xaa", "--prout-type=5", sg_a)
    fio = subprocess.Popen(["fio", "--name=nodeA", f"--filename={sd_a}", "--allow_file_create=0",
                            "--direct=1",
                            "--ioengine=libaio", "--iodepth=32", "--rw=randwrite", "--bs=4k",
                            f"--size={size}", "--time_based", "--runtime=60",
                            "--buffer_pattern=0xaa", "--continue_on_error=all",
                            "--output-format=terse"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(3)
        assert fio.poll() is None, fio.communicate()
        sg_persist("--out", "--preempt-abort", "--param-rk=0xbb", "--param-sark=0xaa",
                   "--prout-type=1", sg_b)
        # From here on, none of A's writes may land.
        sh("dd", "if=/dev/zero", f"of={sd_b}", "conv=nocreat",
           "bs=1M", f"count={size >> 20}", "oflag=direct")
        zeros_written = time.monotonic()
        # fio may give up on its errors meanwhile.
        time.sleep(3)
    finally:
        out, err = kill_fio(fio)
    print(out, err)
    assert time.monotonic() - zeros_written >= 3
    for offset in range(0, size, size // 8):
        assert not direct_write(sd_a, offset, b"\xaa" * 4096)
    data = direct_read(sd_b, 0, size)
    assert data is not None and len(data) == size
    landed = [i for i in range(0, size, 4096) if data[i:i + 4096] != bytes(4096)]
    assert not landed, f"{len(landed)} blocks of the fenced initiator landed, first at {landed[0]}"
    assert keys(sg_b) == ["0xbb"]
    res = sg_persist("--in", "--read-reservation", sg_b).stdout
    assert "Key=0xbb" in res and "Write Exclusive" in res, res


def test_preempt_and_abort_fences_a_writer(two_sessions):
    """Two scst_local sessions as the two nodes."""
    (sd_a, sg_a), (sd_b, sg_b) = two_sessions
    fence_a_writer(sd_a, sg_a, sd_b, sg_b)


def iscsi_disk(initiator):
    """(sdX, sgN) of the kernel initiator's session named `initiator`."""
    for _ in range(200):
        for s in glob.glob("/sys/class/iscsi_session/session*"):
            with open(f"{s}/initiatorname") as f:
                if f.read().strip() != initiator:
                    continue
            sd = glob.glob(f"{s}/device/target*/*:0:0:0/block/*")
            sg = glob.glob(f"{s}/device/target*/*:0:0:0/scsi_generic/*")
            if sd and sg and openable("/dev/" + os.path.basename(sd[0])):
                sh("udevadm", "settle", check=False)
                return "/dev/" + os.path.basename(sd[0]), "/dev/" + os.path.basename(sg[0])
        time.sleep(0.1)
    raise AssertionError(f"no disk for {initiator}")


def set_tas(sg):
    """Sets TAS in the control mode page (MODE SELECT (10) through `sg`):
    commands another nexus aborts end with TASK ABORTED, rather than with
    no response for the initiator to time out on."""
    fd = os.open(sg, os.O_RDWR)
    try:
        status, _, data = sg_io(fd, bytes([0x5A, 0x08, 0x0A, 0, 0, 0, 0, 0, 255, 0]),
                                data_in_len=255)
        assert status == 0
        page = bytearray(data[8:8 + 2 + data[9]])
        page[0] &= 0x3F
        page[5] |= 0x40  # TAS
        params = bytes(8) + bytes(page)
        status, sense, _ = sg_io(fd, struct.pack(">BB5xHB", 0x55, 0x10, len(params), 0),
                                 data_out=params)
        assert status == 0, sense.hex()
    finally:
        os.close(fd)


def test_preempt_and_abort_fences_an_iscsi_node(iscsi_lun):
    """The two nodes as two iSCSI initiators (the kernel's, through two
    open-iscsi interfaces with their own initiator names) on one target.
    TAS is set, as a cluster's shared LUN would have it: the fenced node's
    commands that never ran end at once with TASK ABORTED (without it the
    kernel initiator waits out its command timeout, 30 s, for each)."""
    names = {"nodeA": "iqn.2026-12.org.scst-rs:node-a", "nodeB": "iqn.2026-12.org.scst-rs:node-b"}
    adm = ["timeout", "120", "iscsiadm"]
    with iscsi_daemon():
        try:
            for iface, name in names.items():
                sh(*adm, "-m", "iface", "-I", iface, "-o", "new")
                sh(*adm, "-m", "iface", "-I", iface, "-o", "update", "-n",
                   "iface.initiatorname", "-v", name)
            sh(*adm, "-m", "discovery", "-t", "sendtargets", "-p", "127.0.0.1",
               *[a for iface in names for a in ("-I", iface)])
            for iface in names:
                sh(*adm, "-m", "node", "-T", IQN, "-p", "127.0.0.1", "-I", iface, "--login")
            (sd_a, sg_a), (sd_b, sg_b) = (iscsi_disk(n) for n in names.values())
            for sg in (sg_a, sg_b):
                sh("sg_turs", sg, check=False)
            set_tas(sg_b)
            sh("sg_turs", sg_a, check=False)
            fence_a_writer(sd_a, sg_a, sd_b, sg_b)
        finally:
            sh(*adm, "-m", "node", "--logout", check=False)
            sh(*adm, "-m", "node", "-o", "delete", check=False)
            for iface in names:
                sh(*adm, "-m", "iface", "-I", iface, "-o", "delete", check=False)


def test_aptpl_survives_reload(two_sessions):
    """APTPL: registrations and the reservation come back after rmmod and
    insmod, from a root-only file under /var/lib/scst/pr; without that
    directory the REGISTER fails and changes nothing; clearing APTPL stops
    the state from persisting."""
    (_, sg_a), (_, sg_b) = two_sessions
    saved = os.path.join(PR_DIR, "disk1")
    assert read("devices/disk1/pr_file_name").strip() == saved
    sh("rm", "-rf", PR_DIR)
    r = sg_persist("--out", "--register", "--param-sark=0x11", "--param-aptpl", sg_a,
                   check=False)
    assert r.returncode != 0 and "Internal target failure" in r.stdout + r.stderr, r
    assert keys(sg_a) == []
    os.makedirs(PR_DIR, mode=0o700)
    sg_persist("--out", "--register", "--param-sark=0x11", "--param-aptpl", sg_a)
    # APTPL is the last REGISTER's, for the whole logical unit.
    sg_persist("--out", "--register", "--param-sark=0x22", "--param-aptpl", sg_b)
    sg_persist("--out", "--reserve", "--param-rk=0x11", "--prout-type=6", sg_a)
    assert os.stat(saved).st_mode & 0o777 == 0o600
    assert os.path.exists(saved + ".1")
    caps = sg_persist("--in", "--report-capabilities", sg_a).stdout
    assert "Persist Through Power Loss Active(PTPL_A): 1" in caps, caps

    path = backing_file("pr-local", 64 << 20)
    unload()
    load()
    (_, sg_a), (_, sg_b) = add_two_sessions(path)
    assert keys(sg_a) == ["0x11", "0x22"]
    res = sg_persist("--in", "--read-reservation", sg_b).stdout
    assert "Key=0x11" in res and "Exclusive Access, registrants only" in res, res
    full = sg_persist("--in", "--read-full-status", sg_b).stdout
    assert "nodea" in full.lower() and "nodeb" in full.lower(), full

    # A damaged file: the backup is taken.
    with open(saved, "w") as f:
        f.write("aptpl 1\nregistrant zz\n")
    unload()
    load()
    (_, sg_a), (_, sg_b) = add_two_sessions(path)
    assert keys(sg_a) == ["0x11", "0x22"]

    # REGISTER with APTPL clear: the state stops persisting.
    sg_persist("--out", "--register", "--param-rk=0x22", "--param-sark=0x33", sg_b)
    unload()
    load()
    (_, sg_a), _ = add_two_sessions(path)
    assert keys(sg_a) == []
