# SPDX-License-Identifier: GPL-2.0
"""ALUA: SCST's device_groups/ tree, REPORT and SET TARGET PORT GROUPS
(raw and through sg_rtpg/sg_stpg), commands refused per access state with
the right sense, the unit attentions of a change, and dm-multipath with
the kernel's ALUA device handler over two iSCSI targets failing over when
the states swap and switching groups with an explicit SET TARGET PORT
GROUPS."""

import mmap
import os
import re
import struct
import subprocess
import time

import pytest

from conftest import (ROOT, backing_file, iscsi_daemon, local_disk, mgmt, read, sh, sg_io,
                      unload_leak_free, write)

GOOD, CHECK_CONDITION = 0x00, 0x02
NOT_READY, ILLEGAL_REQUEST, UNIT_ATTENTION = 0x2, 0x5, 0x6
TUR = bytes(6)
READ10 = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0)
READ_CAPACITY10 = bytes([0x25] + [0] * 9)
DG = "device_groups/dg1"


def key_asc(sense):
    """(sense key, ASC, ASCQ) of fixed or descriptor sense."""
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, sense[2], sense[3]
    return sense[2] & 0x0F, sense[12], sense[13]


def command(fd, cdb, data_in_len=0, data_out=b""):
    """(status, (key, asc, ascq) or None, data) of one command."""
    status, sense, data = sg_io(fd, cdb, data_out=data_out, data_in_len=data_in_len)
    return status, key_asc(sense) if status == CHECK_CONDITION else None, data


def pending_uas(fd):
    """The unit attentions queued for the nexus of `fd`, taken with REQUEST
    SENSE: its status is GOOD, so the initiator's SCSI layer never sees
    them (a reported INQUIRY DATA HAS CHANGED makes it rescan the disk
    through the same nexus)."""
    taken = []
    for _ in range(16):
        status, _, data = command(fd, bytes([0x03, 0, 0, 0, 18, 0]), 18)
        assert status == GOOD
        key, asc, ascq = data[2] & 0x0F, data[12], data[13]
        if key == 0:
            return taken
        assert key == UNIT_ATTENTION, (key, asc, ascq)
        taken.append((key, asc, ascq))
    raise AssertionError(f"unit attentions without end: {taken}")


def settle(fds):
    """Takes the unit attentions of `fds`' nexuses once the initiator's own
    scan of the new disks is over (its commands would take them)."""
    time.sleep(1.5)
    for fd in fds:
        pending_uas(fd)


def tpgs(fd):
    status, _, data = command(fd, bytes([0x12, 0, 0, 0, 36, 0]), 36)
    assert status == GOOD
    return (data[5] >> 4) & 3


def rtpg(fd, extended=False):
    """[(group id, state, preferred, status code, [relative port ids])]."""
    cdb = struct.pack(">BBIIBB", 0xA3, 0x0A | (0x20 if extended else 0), 0, 4096, 0, 0)
    status, sense, data = command(fd, cdb, 4096)
    assert status == GOOD, sense
    length = struct.unpack(">I", data[:4])[0]
    at = 8 if extended else 4
    assert len(data) == length + 4
    groups = []
    while at < len(data):
        state, supported, group, _, code, _, count = struct.unpack(">BBHBBBB", data[at:at + 8])
        assert supported == 0xCF
        ports = [struct.unpack(">H", data[at + 10 + 4 * i:at + 12 + 4 * i])[0]
                 for i in range(count)]
        groups.append((group, state & 0x0F, bool(state & 0x80), code, ports))
        at += 8 + 4 * count
    return groups


def stpg(fd, *pairs):
    """SET TARGET PORT GROUPS of (group id, state) pairs."""
    params = bytes(4) + b"".join(struct.pack(">BBH", s, 0, g) for g, s in pairs)
    cdb = struct.pack(">BBIIBB", 0xA4, 0x0A, 0, len(params), 0, 0)
    return command(fd, cdb, data_out=params)


def rel_tgt_id(target):
    return int(read(f"targets/scst_local/{target}/rel_tgt_id").split()[0])


class Ports(list):
    """The open sg nodes of the two ports' sessions; `sgs` their paths."""
    sgs = []


@pytest.fixture
def two_ports(scst):
    """A fileio disk exported by scst_local targets tA and tB (two target
    ports), in device group dg1: tA in tg1 (group 1, active, preferred),
    tB with another node's port 9 in tg2 (group 2, standby). Yields the
    open sg nodes of tA's and tB's sessions."""
    mgmt("handlers/vdisk_fileio/mgmt",
         f"add_device disk1 filename={backing_file('alua', 8 << 20)}")
    _, sg_a = local_disk("disk1", "tA", "sA")
    _, sg_b = local_disk("disk1", "tB", "sB")
    mgmt("device_groups/mgmt", "create dg1")
    mgmt(f"{DG}/devices/mgmt", "add disk1")
    for tg, group, state, targets in (("tg1", 1, "active", ["tA"]),
                                      ("tg2", 2, "standby", ["tB", "node2.port"])):
        mgmt(f"{DG}/target_groups/mgmt", f"create {tg}")
        mgmt(f"{DG}/target_groups/{tg}/group_id", str(group))
        mgmt(f"{DG}/target_groups/{tg}/state", state)
        for t in targets:
            mgmt(f"{DG}/target_groups/{tg}/mgmt", f"add {t}")
    mgmt(f"{DG}/target_groups/tg1/preferred", "1")
    mgmt(f"{DG}/target_groups/tg2/node2.port/rel_tgt_id", "9")
    fds = Ports(os.open(sg, os.O_RDWR) for sg in (sg_a, sg_b))
    fds.sgs = [sg_a, sg_b]
    settle(fds)
    yield fds
    for fd in fds:
        os.close(fd)


def test_device_groups_tree_and_bad_lines(two_ports):
    assert os.path.islink(os.path.join(ROOT, DG, "devices/disk1"))
    assert os.path.islink(os.path.join(ROOT, DG, "target_groups/tg1/tA"))
    assert os.path.isdir(os.path.join(ROOT, DG, "target_groups/tg2/node2.port"))
    assert read(f"{DG}/target_groups/tg1/state").split() == ["active", "[key]"]
    assert read(f"{DG}/target_groups/tg2/state").split() == ["standby", "[key]"]
    assert read(f"{DG}/target_groups/tg1/group_id").split() == ["1", "[key]"]
    assert read(f"{DG}/target_groups/tg1/preferred").split() == ["1", "[key]"]
    assert read(f"{DG}/target_groups/tg2/preferred").split() == ["0"]
    assert read("devices/disk1/expl_alua").split() == ["0"]
    for path, line, reason in (
            (f"{DG}/target_groups/tg1/state", "lba_dependent", "state"),
            (f"{DG}/target_groups/tg1/group_id", "2", "group_id"),
            (f"{DG}/target_groups/tg1/group_id", "65536", "group_id"),
            (f"{DG}/target_groups/tg1/mgmt", "add tB", "exists"),
            (f"{DG}/devices/mgmt", "add nosuchdev", "nosuchdev"),
            ("device_groups/mgmt", "create dg1", "exists"),
            ("device_groups/mgmt", "frobnicate dg2", "frobnicate")):
        assert write(path, line) != 0, (path, line)
        assert reason in read("last_sysfs_mgmt_res"), (line, read("last_sysfs_mgmt_res"))
    mgmt("device_groups/mgmt", "create dg2")
    assert write("device_groups/dg2/devices/mgmt", "add disk1") != 0
    assert "device group" in read("last_sysfs_mgmt_res")
    mgmt("device_groups/mgmt", "del dg2")


def test_report_target_port_groups(two_ports):
    fd_a, fd_b = two_ports
    assert tpgs(fd_a) == 1
    a, b = rel_tgt_id("tA"), rel_tgt_id("tB")
    # tg1 was created active: its state never changed (status code 0).
    expected = [(1, 0x0, True, 0, [a]), (2, 0x2, False, 2, [b, 9])]
    for fd in two_ports:
        assert rtpg(fd) == expected
        assert rtpg(fd, extended=True) == expected
    # The device identification page names each port's group.
    for fd, group in ((fd_a, 1), (fd_b, 2)):
        status, _, vpd = command(fd, bytes([0x12, 1, 0x83, 0, 255, 0]), 255)
        assert status == GOOD
        assert bytes([0x01, 0x15, 0, 4, 0, 0, 0, group]) in vpd
    # sg3_utils reads the same.
    out = sh("sg_rtpg", "--decode", two_ports.sgs[1]).stdout
    assert re.search(r"target port group id\s*:\s*0x2", out), out
    assert "standby" in out, out


def test_standby_refuses_media_access(two_ports):
    fd_a, fd_b = two_ports
    for cdb in (TUR, READ10):
        assert command(fd_b, cdb, 512 if cdb == READ10 else 0)[:2] == \
            (CHECK_CONDITION, (NOT_READY, 0x04, 0x0B))
        assert command(fd_a, cdb, 512 if cdb == READ10 else 0)[0] == GOOD
    # What standby accepts.
    assert command(fd_b, READ_CAPACITY10, 8)[0] == GOOD
    assert command(fd_b, bytes([0x1A, 0, 0x3F, 0, 255, 0]), 255)[0] == GOOD
    assert command(fd_b, bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 8)[0] == GOOD


@pytest.mark.parametrize("state,ascq", [("unavailable", 0x0C), ("offline", 0x12),
                                        ("transitioning", 0x0A)])
def test_other_states_refuse_with_their_sense(two_ports, state, ascq):
    fd_a, fd_b = two_ports
    mgmt(f"{DG}/target_groups/tg1/state", state)
    if state == "transitioning":
        # Entering transitioning is announced when it ends.
        assert pending_uas(fd_a) == []
    else:
        assert pending_uas(fd_a) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert command(fd_a, READ10, 512)[:2] == (CHECK_CONDITION, (NOT_READY, 0x04, ascq))
    assert command(fd_a, bytes([0x12, 0, 0, 0, 36, 0]), 36)[0] == GOOD
    assert rtpg(fd_a)[0][1] == {"unavailable": 3, "offline": 0xE, "transitioning": 0xF}[state]
    mgmt(f"{DG}/target_groups/tg1/state", "active")
    assert pending_uas(fd_a) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert command(fd_a, READ10, 512)[0] == GOOD


def test_implicit_change_tells_every_nexus(two_ports):
    fd_a, fd_b = two_ports
    mgmt(f"{DG}/target_groups/tg2/state", "nonoptimized")
    for fd in two_ports:
        assert pending_uas(fd) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert command(fd_b, READ10, 512)[0] == GOOD
    # Status code 2: changed implicitly.
    assert rtpg(fd_a)[1][1:4] == (0x1, False, 2)


def test_set_target_port_groups(two_ports):
    fd_a, fd_b = two_ports
    # Implicit only: SET TARGET PORT GROUPS is not supported.
    assert stpg(fd_b, (2, 0))[:2] == (CHECK_CONDITION, (ILLEGAL_REQUEST, 0x24, 0x00))
    mgmt("devices/disk1/expl_alua", "1")
    for fd in two_ports:
        assert pending_uas(fd) == [(UNIT_ATTENTION, 0x3F, 0x03)]
    assert tpgs(fd_a) == 3
    # Refused whole: an unknown group, a duplicate, transitioning asked for.
    for pairs in (((2, 0), (7, 1)), ((2, 0), (2, 1)), ((2, 0xF),)):
        assert stpg(fd_b, *pairs)[:2] == (CHECK_CONDITION, (ILLEGAL_REQUEST, 0x26, 0x00))
    assert rtpg(fd_a)[1][1] == 0x2
    # sg_stpg finds the port's group (VPD 83h), reads the states (RTPG)
    # and asks for active/optimized through the standby port.
    sh("sg_stpg", "--optimized", two_ports.sgs[1])
    groups = rtpg(fd_b)
    assert groups[1][1:4] == (0x0, False, 1), groups
    assert pending_uas(fd_b) == []
    assert pending_uas(fd_a) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert command(fd_b, READ10, 512)[0] == GOOD
    # Two groups at once.
    assert stpg(fd_a, (1, 2), (2, 1))[0] == GOOD
    assert [g[1] for g in rtpg(fd_a)] == [0x2, 0x1]
    assert pending_uas(fd_b) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert command(fd_a, READ10, 512)[:2] == (CHECK_CONDITION, (NOT_READY, 0x04, 0x0B))


def test_membership_changes(two_ports):
    fd_a, fd_b = two_ports
    mgmt("targets/scst_local/mgmt", "del_target tB")
    assert not os.path.lexists(os.path.join(ROOT, DG, "target_groups/tg2/tB"))
    # Not an exception to unit attentions: RTPG reports the change first.
    cdb = struct.pack(">BBIIBB", 0xA3, 0x0A, 0, 4096, 0, 0)
    assert command(fd_a, cdb, 4096)[:2] == (CHECK_CONDITION, (UNIT_ATTENTION, 0x2A, 0x06))
    assert rtpg(fd_a)[1][4] == [9]
    mgmt(f"{DG}/target_groups/mgmt", "del tg2")
    assert pending_uas(fd_a) == [(UNIT_ATTENTION, 0x2A, 0x06)]
    assert [g[0] for g in rtpg(fd_a)] == [1]
    mgmt(f"{DG}/devices/mgmt", "del disk1")
    assert (UNIT_ATTENTION, 0x3F, 0x03) in pending_uas(fd_a)
    assert tpgs(fd_a) == 0
    # Out of every device group, the disk's handler answers: no RTPG.
    assert command(fd_a, cdb, 4096)[:2] == (CHECK_CONDITION, (ILLEGAL_REQUEST, 0x24, 0x00))
    mgmt(f"{DG}/devices/mgmt", "add disk1")
    mgmt("device_groups/mgmt", "del dg1")
    assert not os.path.exists(os.path.join(ROOT, DG))
    # Every ALUA object is gone with its group.
    for fd in two_ports:
        os.close(fd)
    two_ports.clear()
    unload_leak_free()


def iscsi_login(iqn):
    sh("timeout", "120", "iscsiadm", "-m", "node", "-T", iqn, "-p", "127.0.0.1", "--login")


def disk_of(iqn):
    """/dev/sdX of the session of `iqn`, once it opens."""
    for _ in range(200):
        for s in os.listdir("/sys/class/iscsi_session"):
            path = f"/sys/class/iscsi_session/{s}"
            with open(f"{path}/targetname") as f:
                if f.read().strip() != iqn:
                    continue
            found = [b for d in os.listdir(f"{path}/device") if d.startswith("target")
                     for lun in os.listdir(f"{path}/device/{d}") if ":" in lun
                     if os.path.isdir(f"{path}/device/{d}/{lun}/block")
                     for b in os.listdir(f"{path}/device/{d}/{lun}/block")]
            if found:
                return "/dev/" + found[0]
        time.sleep(0.1)
    raise AssertionError(f"no disk for {iqn}")


def dm_status(name):
    return sh("dmsetup", "status", name).stdout


def write_and_verify(dev, seed):
    """Writes 1 MiB of `seed` at the start of `dev` and reads it back,
    both with O_DIRECT (through the paths, not the page cache)."""
    size = 1 << 20
    data = (seed * size)[:size]
    buf = mmap.mmap(-1, size)
    buf.write(data)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        assert os.pwritev(fd, [buf], 0) == size
        os.fsync(fd)
        buf.seek(0)
        buf.write(bytes(size))
        assert os.preadv(fd, [buf], 0) == size
        assert buf[:] == data
    finally:
        os.close(fd)
        buf.close()


def test_dm_multipath_fails_over_and_switches(scst):
    """Two iSCSI targets export one disk; dm-multipath with the alua
    handler uses the active group, fails over when the administrator swaps
    the states, and its path group switch sends SET TARGET PORT GROUPS."""
    sh("ip", "link", "set", "lo", "up")
    mgmt("handlers/vdisk_fileio/mgmt",
         f"add_device disk1 filename={backing_file('alua-mp', 32 << 20)}")
    iqns = ["iqn.2026-12.org.scst-rs:alua-a", "iqn.2026-12.org.scst-rs:alua-b"]
    for iqn in iqns:
        mgmt("targets/iscsi/mgmt", f"add_target {iqn}")
        mgmt(f"targets/iscsi/{iqn}/luns/mgmt", "add disk1 0")
        mgmt(f"targets/iscsi/{iqn}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    mgmt("device_groups/mgmt", "create dg1")
    mgmt(f"{DG}/devices/mgmt", "add disk1")
    mgmt("devices/disk1/expl_alua", "1")
    for tg, group, state, iqn in (("tg1", 1, "active", iqns[0]), ("tg2", 2, "standby", iqns[1])):
        mgmt(f"{DG}/target_groups/mgmt", f"create {tg}")
        mgmt(f"{DG}/target_groups/{tg}/group_id", str(group))
        mgmt(f"{DG}/target_groups/{tg}/state", state)
        mgmt(f"{DG}/target_groups/{tg}/mgmt", f"add {iqn}")
    with iscsi_daemon():
        try:
            sh("timeout", "120", "iscsiadm", "-m", "discovery", "-t", "sendtargets",
               "-p", "127.0.0.1")
            for iqn in iqns:
                iscsi_login(iqn)
            disks = [disk_of(iqn) for iqn in iqns]
            sh("udevadm", "settle", check=False)
            for d in disks:
                name = os.path.basename(d)
                with open(f"/sys/block/{name}/device/dh_state") as f:
                    assert f.read().strip() == "alua", name
            numbers = [os.stat(d).st_rdev for d in disks]
            paths = [f"{os.major(n)}:{os.minor(n)}" for n in numbers]
            sectors = int(open(f"/sys/block/{os.path.basename(disks[0])}/size").read())
            table = (f"0 {sectors} multipath 0 1 alua 2 1 "
                     f"round-robin 0 1 1 {paths[0]} 1 round-robin 0 1 1 {paths[1]} 1")
            sh("dmsetup", "create", "alua-mp", "--table", table)
            try:
                mp = "/dev/mapper/alua-mp"
                write_and_verify(mp, b"first ")
                # The administrator swaps the states: the standby path now
                # refuses, dm-multipath fails over to the other group.
                mgmt(f"{DG}/target_groups/tg2/state", "active")
                mgmt(f"{DG}/target_groups/tg1/state", "standby")
                write_and_verify(mp, b"second")
                assert read(f"{DG}/target_groups/tg1/state").split()[0] == "standby"
                assert re.search(rf"{paths[0]} F ", dm_status("alua-mp")), dm_status("alua-mp")
                # Switching back to group 1 makes the alua handler send SET
                # TARGET PORT GROUPS (explicit ALUA) through tg1's port.
                sh("dmsetup", "message", "alua-mp", "0", "reinstate_path", paths[0])
                sh("dmsetup", "message", "alua-mp", "0", "switch_group", "1")
                write_and_verify(mp, b"third ")
                for _ in range(100):
                    if read(f"{DG}/target_groups/tg1/state").split()[0] == "active":
                        break
                    time.sleep(0.1)
                assert read(f"{DG}/target_groups/tg1/state").split()[0] == "active", \
                    sh("dmesg").stdout[-3000:]
            finally:
                subprocess.run(["dmsetup", "remove", "--retry", "alua-mp"], check=False)
        finally:
            sh("timeout", "120", "iscsiadm", "-m", "node", "--logout", check=False)
            sh("timeout", "120", "iscsiadm", "-m", "node", "-o", "delete", check=False)
    mgmt("targets/iscsi/enabled", "0")
