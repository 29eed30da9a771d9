# SPDX-License-Identifier: GPL-2.0
"""Faults the target must survive: initiators killed or gone silent at
each phase of a command, and the module removed while initiators are
busy. Each test ends with the module unloaded and kmemleak scanned for
the module's own objects; guest-run fails the run on any oops, lockdep
or hung-task report."""

import os
import socket
import struct
import subprocess
import time

import pytest

from conftest import (DATA_IN, R2T, ROOT, SCSI_RESPONSE, backing_file, bhs, closed, device_of,
                      fio_running, iscsi_export, iscsi_sessions, kill_fio, kmemleak_report, load,
                      loaded, local_disk, mgmt, next_reply, open_iscsi_login, raw_full_feature,
                      rw10, sh, unload, unload_leak_free, wait_no_iscsi_sessions)

IQN = "iqn.2026-12.org.scst-rs:faults"
INITIATOR = "iqn.2026-12.org.scst-rs:faults-client"

# A device whose every I/O completes 2 s after submission (task management
# then has a command to wait for).
STALL_NSEC = 2_000_000_000


def itt_of(hdr):
    return int.from_bytes(hdr[16:20], "big")


def sessions():
    return iscsi_sessions(IQN)


def wait_no_sessions():
    return wait_no_iscsi_sessions(IQN)


def kill(s, how):
    """The initiator goes away: with a TCP reset, or silently (it stops
    sending and reading; the target's NOP-In pings go unanswered)."""
    if how == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return None
    return s


def logged_in(isid=b"\x80\x00\x00\x00\x00\x01"):
    s, exp, _ = raw_full_feature(IQN, INITIATOR, isid)
    s.settimeout(30)
    # The new nexus' unit attention.
    s.sendall(bhs(0x01, 0x80 | 0x01, itt=0x1, cmd_sn=exp, rest=bytes(16), immediate=False))
    hdr, _ = next_reply(s)
    assert hdr[0] & 0x3F == SCSI_RESPONSE, hdr.hex()
    return s, exp + 1


def phase_login(how):
    """A login cut short: the security stage's first request, no more."""
    s = socket.create_connection(("127.0.0.1", 3260), timeout=20)
    text = f"InitiatorName={INITIATOR}\0TargetName={IQN}\0AuthMethod=None\0".encode()
    hdr = bytearray(48)
    hdr[0] = 0x43
    hdr[1] = 0x80 | 1  # T, CSG security, NSG operational
    hdr[5:8] = len(text).to_bytes(3, "big")
    hdr[8:14] = b"\x80\x00\x00\x00\x00\x07"
    hdr[16:20] = (1).to_bytes(4, "big")
    s.sendall(bytes(hdr) + text + b"\0" * (-len(text) % 4))
    rsp, _ = next_reply(s)
    assert rsp[0] & 0x3F == 0x23 and rsp[36] == 0, rsp.hex()
    return kill(s, how)


def phase_r2t(how):
    """Writes whose data the target asked for (R2T), never sent."""
    s, exp = logged_in()
    for i in range(4):
        s.sendall(bhs(0x01, 0x80 | 0x20 | 0x01, itt=0x10 + i, word20=1 << 20, cmd_sn=exp + i,
                      rest=rw10(0x2A, 2048 * i, 2048), immediate=False))
        hdr, _ = next_reply(s)
        assert hdr[0] & 0x3F == R2T, hdr.hex()
    return kill(s, how)


def phase_data_in(how):
    """Reads whose Data-In is streaming: 32 MiB asked for, a little read."""
    s, exp = logged_in()
    for i in range(32):
        s.sendall(bhs(0x01, 0x80 | 0x40 | 0x01, itt=0x20 + i, word20=1 << 20, cmd_sn=exp + i,
                      rest=rw10(0x28, 2048 * (i % 8), 2048), immediate=False))
    hdr, _ = next_reply(s)
    assert hdr[0] & 0x3F == DATA_IN, hdr.hex()
    return kill(s, how)


def phase_tm_pending(how):
    """LUN RESET waiting for a READ that the device holds for 2 s."""
    s, exp = logged_in()
    s.sendall(bhs(0x01, 0x80 | 0x40 | 0x01, itt=0x30, word20=4096, cmd_sn=exp,
                  rest=rw10(0x28, 1 << 20, 8), immediate=False))
    for _ in range(100):
        with open("/sys/block/nullb0/inflight") as f:
            if sum(int(n) for n in f.read().split()):
                break
        time.sleep(0.02)
    # LUN RESET (function 5), immediate.
    s.sendall(bhs(0x02, 0x80 | 5, itt=0x31, word20=0xFFFFFFFF, cmd_sn=exp + 1))
    return kill(s, how)


@pytest.fixture
def stalling_target(scst):
    """LUN 0: vdisk_fileio on a null_blk device that completes every I/O
    after 2 s; NOP-In after 1 s of silence, answered within 2 s."""
    sh("ip", "link", "set", "lo", "up")
    sh("modprobe", "null_blk", "nr_devices=1", "irqmode=2", f"completion_nsec={STALL_NSEC}",
       "gb=1")
    try:
        mgmt("handlers/vdisk_fileio/mgmt", "add_device faulty filename=/dev/nullb0")
        mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
        mgmt(f"targets/iscsi/{IQN}/NopInInterval", "1")
        mgmt(f"targets/iscsi/{IQN}/NopInTimeout", "2")
        mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add faulty 0")
        mgmt(f"targets/iscsi/{IQN}/enabled", "1")
        mgmt("targets/iscsi/enabled", "1")
        yield
    finally:
        # The module lets the device go only as it unloads; loaded again
        # for the scst fixture.
        if loaded():
            unload()
        sh("rmmod", "null_blk", check=False)
        load()


PHASES = [phase_login, phase_r2t, phase_data_in, phase_tm_pending]


def test_initiator_killed_at_each_phase(stalling_target):
    """At each phase (login, R2T outstanding, Data-In streaming, task
    management pending) the initiator resets its connection, or goes
    silent: the target ends the session (a silent one once its NOP-In goes
    unanswered), keeps serving a new one, and leaks nothing."""
    for phase in PHASES:
        for how in ("rst", "silent"):
            left = phase(how)
            try:
                if left is not None:
                    # Silent: the target closes it (NOP-In timeout).
                    assert closed(left, timeout=30), f"{phase.__name__}: silent peer kept"
                assert wait_no_sessions(), f"{phase.__name__}/{how}: sessions left: {sessions()}"
            finally:
                if left is not None:
                    left.close()
            # Still served.
            s, _ = logged_in(isid=b"\x80\x00\x00\x00\x00\x09")
            s.close()
            assert wait_no_sessions()
    unload_leak_free()


def rmmod_while_busy(fio):
    """rmmod once fio has run a moment: it either succeeds or is refused,
    within a bound; it never hangs or oopses. Returns rmmod's status."""
    time.sleep(3)
    assert fio.poll() is None, "fio ended early: " + fio.communicate()[1]
    started = time.monotonic()
    r = subprocess.run(["rmmod", "scst"], capture_output=True, text=True, timeout=120)
    print(f"rmmod during fio: status {r.returncode} after {time.monotonic() - started:.1f} s"
          f" {r.stderr.strip()}")
    return r.returncode


def test_rmmod_during_fio_over_iscsi(scst):
    """rmmod while open-iscsi runs fio at QD32: the module closes the
    connections and unloads (or refuses), the initiator sees errors, and
    nothing oopses, hangs or leaks."""
    path = backing_file("faults", 64 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device busy0 filename={path}")
    with iscsi_export(IQN, "busy0"):
        # Once the target is gone, fio's I/O fails after 5 s rather than
        # open-iscsi's default 120 s of waiting for a new connection.
        with open_iscsi_login(IQN, settings=[("node.session.timeo.replacement_timeout", 5)]) \
                as scsi_devices:
            dev = device_of(scsi_devices, "block/sd*")
            assert dev, "no disk from the iSCSI login"
            fio = fio_running(dev)
            status = rmmod_while_busy(fio)
            kill_fio(fio)
            if status == 0:
                # Gone with its sessions; back (empty) for what follows.
                load()
        if status != 0:
            # Refused while serving: removable once the initiator is gone.
            mgmt("targets/iscsi/enabled", "0")
            unload()
            load()
    unload_leak_free()


def test_rmmod_during_fio_over_scst_local(scst):
    path = backing_file("faults", 64 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device busy1 filename={path}")
    sd, _ = local_disk("busy1", "busy_t")
    fio = fio_running(sd)
    status = rmmod_while_busy(fio)
    kill_fio(fio)
    if status != 0:
        # Refused while the disk is in use: removable once fio is gone.
        sh("udevadm", "settle", check=False)
        r = subprocess.run(["rmmod", "scst"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    assert not os.path.exists(ROOT)
    report = kmemleak_report()
    assert "[scst]" not in report, report
    load()
