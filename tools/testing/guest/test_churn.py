# SPDX-License-Identifier: GPL-2.0
"""Sessions and configuration that change while the target serves:
logins and logouts in a loop with I/O, hundreds of connection attempts
at once, and LUNs, groups and devices added and removed under fio. Each
test ends with the module unloaded and kmemleak scanned; guest-run fails
the run on any oops, lockdep or hung-task report.

The counts are environment variables, for longer runs than CI's:
CHURN_LOGINS (raw logins, default 200), CHURN_KERNEL_LOGINS (open-iscsi
logins, default 4), CHURN_CONNECTS (connection attempts at once, default
500), CHURN_ROUNDS (management rounds under fio, default 12)."""

import glob
import os
import struct
import subprocess
import threading
import time

from conftest import (ROOT, SCSI_RESPONSE, backing_file, bhs, device_of, devices, fio_running,
                      host_of, iscsi_daemon, iscsi_sessions, kill_fio, local_disk, logout, mgmt,
                      next_reply, raw_full_feature, raw_login, read10, sh, unload_leak_free,
                      wait_no_iscsi_sessions, write10)

IQN = "iqn.2026-12.org.scst-rs:churn"
INITIATOR = "iqn.2026-12.org.scst-rs:churn-client"

LOGINS = int(os.environ.get("CHURN_LOGINS", "200"))
KERNEL_LOGINS = int(os.environ.get("CHURN_KERNEL_LOGINS", "4"))
CONNECTS = int(os.environ.get("CHURN_CONNECTS", "500"))
ROUNDS = int(os.environ.get("CHURN_ROUNDS", "12"))

# scst_iscsi/mod.rs MAX_CONNECTIONS: connections served at once.
MAX_CONNECTIONS = 128

CHECK_CONDITION = 0x02


def sessions():
    return iscsi_sessions(IQN)


def wait_no_sessions():
    return wait_no_iscsi_sessions(IQN, seconds=60)


def export(devices_at_luns):
    """An enabled iSCSI target with each (device, LUN)."""
    sh("ip", "link", "set", "lo", "up")
    mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
    for dev, lun in devices_at_luns:
        mgmt(f"targets/iscsi/{IQN}/luns/mgmt", f"add {dev} {lun}")
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")


class FioVerifyLoop:
    """fio writing random 4 KiB blocks to `dev` and verifying every one
    (crc32c), over and over until stopped; every pass must succeed."""

    def __init__(self, dev):
        self.dev = dev
        self.passes = 0
        self.failure = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            r = subprocess.run(["fio", "--name=verify", f"--filename={self.dev}",
                                "--allow_file_create=0", "--direct=1",
                                "--ioengine=libaio", "--iodepth=16", "--rw=randwrite", "--bs=4k",
                                "--size=8M", "--verify=crc32c", "--verify_fatal=1",
                                "--do_verify=1", "--randrepeat=0", "--output-format=terse"],
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                self.failure = r.stdout + r.stderr
                return
            self.passes += 1

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=600)
        assert self.failure is None, self.failure
        assert self.passes >= 1, "fio never completed a pass"
        return self.passes


def session_with_io(isid, slot, n):
    """One session: login, the new nexus' unit attention, a 4 KiB write
    of its own pattern at its slot, the read-back, Logout."""
    s, exp, _ = raw_full_feature(IQN, INITIATOR, isid)
    try:
        s.settimeout(60)
        s.sendall(bhs(0x01, 0x80 | 0x01, itt=1, cmd_sn=exp, rest=bytes(16), immediate=False))
        assert next_reply(s)[0][0] & 0x3F == SCSI_RESPONSE
        data = struct.pack(">I", n) * 1024
        hdr, _ = write10(s, 2, exp + 1, slot * 8, data)
        assert hdr[3] == 0, f"write status {hdr[3]:#x}"
        back, status, sense = read10(s, 3, exp + 2, slot * 8, 8)
        assert status == 0, f"read status {status:#x} sense {sense.hex()}"
        assert back == data, f"session {n}: read back what it did not write"
        assert logout(s, 4, exp + 3) == 0
    finally:
        s.close()


def kernel_initiator_cycles(count):
    """open-iscsi logs in, reads 1 MiB from the disk, logs out, `count`
    times; the seconds each cycle took."""
    adm = ["timeout", "120", "iscsiadm"]
    took = []
    with iscsi_daemon():
        sh(*adm, "-m", "discovery", "-t", "sendtargets", "-p", "127.0.0.1")
        try:
            for _ in range(count):
                started = time.monotonic()
                sh(*adm, "-m", "node", "-T", IQN, "-p", "127.0.0.1", "--login")
                disk = device_of(lambda: glob.glob(
                    "/sys/class/iscsi_session/session*/device/target*/*:0:0:*"), "block/sd*")
                assert disk, "no disk from the iSCSI login"
                sh("dd", f"if={disk}", "of=/dev/null", "bs=64k", "count=16", "iflag=direct")
                sh(*adm, "-m", "node", "-T", IQN, "-p", "127.0.0.1", "--logout")
                took.append(time.monotonic() - started)
        finally:
            sh(*adm, "-m", "node", "--logout", check=False)
            sh(*adm, "-m", "node", "-o", "delete", check=False)
    return took


def test_session_churn_with_io(scst):
    """Raw sessions log in, write, read back and log out in a loop, from
    four threads at once (each with its own ISID), and the kernel's
    initiator logs in and out between them, while fio verifies through
    scst_local on another device: every session's data reads back, no
    session is left, and nothing leaks."""
    path = backing_file("churn", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device churn0 filename={path}")
    other = backing_file("churn-local", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device churn1 filename={other}")
    local, _ = local_disk("churn1", "churn_t")
    export([("churn0", 0)])

    fio = FioVerifyLoop(local)
    threads, per = 4, LOGINS // 4
    failures = []

    def churn(t):
        isid = b"\x80\x00\x00\x00\x01" + bytes([t])
        for i in range(per):
            try:
                session_with_io(isid, t * 1024 + i % 1024, t * per + i)
            except Exception as e:  # noqa: BLE001 - reported below with the session
                failures.append(f"thread {t} session {i}: {e!r}")
                return

    started = time.monotonic()
    workers = [threading.Thread(target=churn, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=900)
    raw_seconds = time.monotonic() - started
    kernel = kernel_initiator_cycles(KERNEL_LOGINS)
    passes = fio.stop()
    print(f"{threads * per} raw sessions in {raw_seconds:.1f} s; {len(kernel)} open-iscsi"
          f" sessions, {sum(kernel) / max(1, len(kernel)):.1f} s each; {passes} fio passes")
    assert not failures, failures[:5]
    assert wait_no_sessions(), f"sessions left: {sessions()}"
    mgmt("targets/iscsi/enabled", "0")
    unload_leak_free()


def attempt(isid, barrier, hold, outcomes, logouts):
    """One connection attempt, made when every attempt is ready: its
    outcome is ("login", status class, detail), "closed" (the target
    closed it without a Login Response), or the error that ended it. A
    session that logged in logs out once every attempt has its outcome:
    the Logout Response's code (or the error) goes to `logouts`."""
    barrier.wait()
    try:
        s, rsp = raw_login(IQN, INITIATOR, isid, timeout=120)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        outcomes.append(("closed",))
        return
    except (OSError, AssertionError) as e:
        outcomes.append(("error", repr(e)))
        return
    outcomes.append(("login", rsp[36], rsp[37]))
    try:
        if rsp[36] == 0:
            # Held until every attempt has its outcome, then logs out.
            hold.wait(timeout=300)
            exp = int.from_bytes(rsp[28:32], "big")
            logouts.append(logout(s, 9, exp))
    except (AssertionError, OSError, EOFError) as e:
        logouts.append(repr(e))
    finally:
        s.close()


def test_concurrent_connection_attempts(scst):
    """CHURN_CONNECTS connections at once, each logging in and holding
    its session: up to MAX_CONNECTIONS log in, the others are refused
    ("out of resources", 0x0302) or closed; none waits without an answer.
    Then they log out, and a new session is served."""
    path = backing_file("churn", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device churn0 filename={path}")
    export([("churn0", 0)])
    barrier = threading.Barrier(CONNECTS)
    hold = threading.Event()
    outcomes, logouts = [], []
    workers = [threading.Thread(target=attempt, args=(struct.pack(">BxI", 0x80, i), barrier,
                                                      hold, outcomes, logouts))
               for i in range(CONNECTS)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for _ in range(3000):
        if len(outcomes) == CONNECTS:
            break
        time.sleep(0.1)
    answered = time.monotonic() - started
    hold.set()
    for w in workers:
        w.join(timeout=300)
    tally = {}
    for o in outcomes:
        tally[o] = tally.get(o, 0) + 1
    print(f"{CONNECTS} attempts answered in {answered:.1f} s: {tally}")
    assert len(outcomes) == CONNECTS, f"{CONNECTS - len(outcomes)} attempts never answered"
    logged = tally.get(("login", 0, 0), 0)
    refused = tally.get(("login", 3, 2), 0)
    closed = tally.get(("closed",), 0)
    assert logged + refused + closed == CONNECTS, tally
    assert 0 < logged <= MAX_CONNECTIONS, tally
    assert logouts == [0] * logged, f"logouts: {logouts[:5]}"
    assert wait_no_sessions(), f"sessions left: {sessions()}"
    # Served again.
    s, exp, _ = raw_full_feature(IQN, INITIATOR)
    assert logout(s, 1, exp) == 0
    s.close()
    mgmt("targets/iscsi/enabled", "0")
    unload_leak_free()


def raw_status(s, itt, cmd_sn, lun):
    """READ(10) of one block of `lun`: the status and sense data."""
    _, status, sense = read10(s, itt, cmd_sn, 0, 1, lun=lun << 48)
    return status, sense


def lun_device_gone(host, lun, seconds=20):
    """Whether the SCSI device of `lun` on scst_local `host` is gone within
    `seconds` (the host rescans when its LUNs change)."""
    path = f"/sys/class/scsi_host/{host}/device/target*:0:0/*:0:0:{lun}"
    deadline = time.monotonic() + seconds
    while glob.glob(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_management_under_load(scst):
    """While fio verifies LUN 0 through scst_local and fio runs on LUN 1,
    LUN 1's device is deleted and added again, and LUNs and groups are
    added and removed, round after round: LUN 0's data verifies, a raw
    iSCSI session's command to the removed LUN ends with LOGICAL UNIT NOT
    SUPPORTED (05/25/00), and nothing is left behind."""
    keep = backing_file("churn-keep", 16 << 20)
    moving = backing_file("churn-moving", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device keep0 filename={keep}")
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device moving0 filename={moving}")
    mgmt("targets/scst_local/mgmt", "add_target churn_t")
    mgmt("targets/scst_local/churn_t/luns/mgmt", "add keep0 0")
    mgmt("targets/scst_local/churn_t/luns/mgmt", "add moving0 1")
    mgmt("targets/scst_local/mgmt", "add_session churn_t s1")
    host = host_of("churn_t", "s1")
    keep_dev, _ = devices(host, 0)
    moving_dev, _ = devices(host, 1)
    export([("keep0", 0), ("moving0", 1)])
    s, exp, _ = raw_full_feature(IQN, INITIATOR)
    s.settimeout(60)

    verify = FioVerifyLoop(keep_dev)
    # LUN 1 loses its device again and again: errors are expected there.
    busy = fio_running(moving_dev, 3600, "--size=16M", "--continue_on_error=all")
    itt = 0x100
    started = time.monotonic()
    try:
        for r in range(ROUNDS):
            time.sleep(0.5)
            assert busy.poll() is None, "fio on the moving LUN ended: " + kill_fio(busy)[1]
            # The device goes, with fio's commands in flight on it.
            mgmt("handlers/vdisk_fileio/mgmt", "del_device moving0")
            assert not os.path.exists(os.path.join(ROOT, "targets/iscsi", IQN, "luns/1"))
            for _ in range(3):
                status, sense = raw_status(s, itt, exp, 1)
                itt, exp = itt + 1, exp + 1
                if status == CHECK_CONDITION and sense[2] & 0x0F == 0x06:
                    continue  # REPORTED LUNS DATA HAS CHANGED first
                break
            assert status == CHECK_CONDITION, f"round {r}: status {status:#x}"
            assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x05, 0x25, 0x00), sense.hex()
            # Groups come and go, with a LUN and an initiator of their own.
            group = f"targets/iscsi/{IQN}/ini_groups"
            mgmt(f"{group}/mgmt", f"create g{r}")
            mgmt(f"{group}/g{r}/luns/mgmt", "add keep0 0")
            mgmt(f"{group}/g{r}/initiators/mgmt", f"add iqn.2026-12.org.scst-rs:other{r}")
            mgmt(f"{group}/mgmt", f"del g{r}")
            # The scst_local host rescans: LUN 1's disk goes, and the fio
            # on it ends.
            assert lun_device_gone(host, 1), f"round {r}: LUN 1's disk stayed"
            kill_fio(busy)
            # The device comes back, at LUN 1 of both targets.
            mgmt("handlers/vdisk_fileio/mgmt", f"add_device moving0 filename={moving}")
            mgmt("targets/scst_local/churn_t/luns/mgmt", "add moving0 1")
            mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add moving0 1")
            # And LUN 0 of the scst_local target is replaced by itself.
            mgmt("targets/scst_local/churn_t/luns/mgmt", "replace keep0 0")
            # The rescan brings LUN 1's disk back: fio on it again.
            moving_dev, _ = devices(host, 1)
            busy = fio_running(moving_dev, 3600, "--size=16M", "--continue_on_error=all")
        seconds = time.monotonic() - started
        # LUN 1 serves the raw session again (past its unit attention).
        for _ in range(3):
            status, sense = raw_status(s, itt, exp, 1)
            itt, exp = itt + 1, exp + 1
            if status == 0:
                break
        assert status == 0, f"LUN 1 back: status {status:#x} sense {sense.hex()}"
    finally:
        kill_fio(busy)
        s.close()
    passes = verify.stop()
    print(f"{ROUNDS} rounds of deletes and adds in {seconds:.1f} s under fio;"
          f" {passes} verified fio passes on LUN 0")
    assert wait_no_sessions()
    mgmt("targets/iscsi/enabled", "0")
    # The scst_local disks go with the module.
    unload_leak_free()

