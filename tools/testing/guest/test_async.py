# SPDX-License-Identifier: GPL-2.0
"""The asynchronous command life cycle, seen from the wire: a connection's
receive loop never waits for a backend or for another command. Commands
that wait for their Data-Out, or for older commands by task attribute, or
in a user-space handler, never stop the same connection (or another) from
receiving, answering NOP-Out, or running task management; and every
command is answered in the order SAM-5 asks for."""

import contextlib
import os
import re
import struct
import subprocess
import time

import pytest

from conftest import (ROOT, backing_file, bhs, device_of, devices, host_of, iscsi_export,
                      mgmt, open_iscsi_login, ping, raw_full_feature, recv_pdu, sh, write)
from conftest import read10 as read_with_data

IQN = "iqn.2026-12.org.scst-rs:async"
INITIATOR = "iqn.2026-12.org.scst-rs:async-client"
OTHER = "iqn.2026-12.org.scst-rs:async-other"

SIMPLE, ORDERED, HEAD_OF_QUEUE = 1, 2, 3
SCSI_RESPONSE, DATA_IN, R2T, NOP_IN, TMF_RESPONSE = 0x21, 0x25, 0x31, 0x20, 0x22


@pytest.fixture
def target(scst):
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("async", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device async1 filename={path}")
    with iscsi_export(IQN, "async1"):
        yield


def itt_of(hdr):
    return int.from_bytes(hdr[16:20], "big")


def write_awaiting_data(s, itt, cmd_sn, lba=0):
    """WRITE(10) of one block with no data: the target asks with an R2T.
    Returns the Target Transfer Tag."""
    cdb = bytes([0x2A, 0, *lba.to_bytes(4, "big"), 0, 0, 1, 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20 | SIMPLE, itt=itt, word20=512, cmd_sn=cmd_sn, rest=cdb,
                  immediate=False))
    hdr, _ = recv_pdu(s)
    assert hdr[0] & 0x3F == R2T and itt_of(hdr) == itt, hdr.hex()
    return int.from_bytes(hdr[20:24], "big")


def data_out(s, itt, ttt, payload):
    hdr = bytearray(bhs(0x05, 0x80, dlen=len(payload), itt=itt, word20=ttt, immediate=False))
    s.sendall(bytes(hdr) + payload)


def send_tur(s, itt, cmd_sn, attr):
    """TEST UNIT READY with task attribute `attr`."""
    s.sendall(bhs(0x01, 0x80 | attr, itt=itt, cmd_sn=cmd_sn, rest=bytes(16), immediate=False))



def responses(s, count, timeout=30):
    """The next `count` SCSI Responses (or Data-In with status), in arrival
    order, as (ITT, status)."""
    s.settimeout(timeout)
    got = []
    while len(got) < count:
        hdr, _ = recv_pdu(s)
        op = hdr[0] & 0x3F
        if op == SCSI_RESPONSE or (op == DATA_IN and hdr[1] & 0x01):
            got.append((itt_of(hdr), hdr[3]))
        else:
            assert op == DATA_IN, f"unexpected opcode {op:#x}"
    return got


def logged_in(iqn, initiator, isid=b"\x80\x00\x00\x00\x00\x01"):
    """A raw session past its unit attentions (a new nexus reports POWER ON,
    RESET first): the socket and the next CmdSN."""
    s, exp, _ = raw_full_feature(iqn, initiator, isid)
    for i in range(8):
        send_tur(s, 0x1000 + i, exp, SIMPLE)
        exp += 1
        if responses(s, 1)[0][1] == 0:
            return s, exp
    raise AssertionError("unit attentions never cleared")


def nothing_arrives(s, seconds=1.0):
    s.settimeout(seconds)
    try:
        hdr, _ = recv_pdu(s)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected PDU {hdr.hex()}")


def test_ordered_waits_for_a_write_awaiting_data(target):
    """An ORDERED command behind a write that waits for its Data-Out: the
    connection goes on receiving (NOP-Out answered, the Data-Out read), and
    the ORDERED command is answered after the write."""
    s, exp = logged_in(IQN, INITIATOR)
    try:
        ttt = write_awaiting_data(s, 0x30, exp)
        send_tur(s, 0x31, exp + 1, ORDERED)
        assert itt_of(ping(s, 0x32, exp + 2)) == 0x32, "the ping was not answered first"
        data_out(s, 0x30, ttt, b"\x5a" * 512)
        assert responses(s, 2) == [(0x30, 0), (0x31, 0)]
    finally:
        s.close()


def test_head_of_queue_passes_a_write_awaiting_data(target):
    """A HEAD OF QUEUE command does not wait for an older write: it is
    answered while the write still waits for its Data-Out."""
    s, exp = logged_in(IQN, INITIATOR)
    try:
        ttt = write_awaiting_data(s, 0x40, exp)
        send_tur(s, 0x41, exp + 1, HEAD_OF_QUEUE)
        assert responses(s, 1) == [(0x41, 0)]
        data_out(s, 0x40, ttt, b"\xa5" * 512)
        assert responses(s, 1) == [(0x40, 0)]
    finally:
        s.close()


def test_ordered_across_connections(target):
    """An ORDERED command of one session waits for another session's write
    to the same device, whose Data-Out is still to come; its own connection
    keeps answering meanwhile."""
    a, exp_a = logged_in(IQN, INITIATOR)
    b, exp_b = logged_in(IQN, OTHER, isid=b"\x80\x00\x00\x00\x00\x02")
    try:
        ttt = write_awaiting_data(a, 0x50, exp_a)
        send_tur(b, 0x51, exp_b, ORDERED)
        assert itt_of(ping(b, 0x52, exp_b + 1)) == 0x52
        assert nothing_arrives(b)
        data_out(a, 0x50, ttt, b"\x3c" * 512)
        assert responses(a, 1) == [(0x50, 0)]
        assert responses(b, 1) == [(0x51, 0)]
    finally:
        a.close()
        b.close()


def abort_task(s, itt, ref_itt, ref_cmd_sn, cmd_sn):
    """ABORT TASK (immediate)."""
    rest = struct.pack(">II", ref_cmd_sn, 0)
    s.sendall(bhs(0x02, 0x80 | 0x01, itt=itt, word20=ref_itt, cmd_sn=cmd_sn, rest=rest))


def test_abort_task_of_a_command_waiting_for_an_older_one(target):
    """ABORT TASK reaches an ORDERED command that waits behind a write
    awaiting its Data-Out: it ends unanswered and at once ("function
    complete"), and the write completes when its data comes."""
    s, exp = logged_in(IQN, INITIATOR)
    try:
        ttt = write_awaiting_data(s, 0x80, exp)
        send_tur(s, 0x81, exp + 1, ORDERED)
        abort_task(s, 0x82, 0x81, exp + 1, exp + 2)
        s.settimeout(10)
        hdr, _ = recv_pdu(s)
        assert hdr[0] & 0x3F == TMF_RESPONSE and itt_of(hdr) == 0x82, hdr.hex()
        assert hdr[2] == 0, f"ABORT TASK answered {hdr[2]}"
        data_out(s, 0x80, ttt, b"\x11" * 512)
        assert responses(s, 1) == [(0x80, 0)]
        assert itt_of(ping(s, 0x83, exp + 2)) == 0x83, "the aborted command was answered"
    finally:
        s.close()


def read10(s, itt, cmd_sn, lba, blocks=1):
    cdb = bytes([0x28, 0, *lba.to_bytes(4, "big"), 0, *blocks.to_bytes(2, "big"), 0])
    cdb = cdb.ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x40 | SIMPLE, itt=itt, word20=512 * blocks, cmd_sn=cmd_sn,
                  rest=cdb, immediate=False))


def holds_its_command(h):
    """Waits (up to 10 s) until handler `h` says it holds a command."""
    for _ in range(100):
        if any(line.startswith("holding command") for line in h.lines):
            return True
        time.sleep(0.1)
    return False


def test_held_user_command_blocks_nothing(handlers):
    """A READ that a scst_user handler holds: a second READ on the same
    connection is answered meanwhile, NOP-Out too, and ABORT TASK on the
    same connection reaches the handler, which ends the held command; the
    task management response comes after it, and the command has none."""
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("uasync", 16 << 20)
    held_lba = 4000
    h = handlers("uasync", path, "-t", "2", "--hold-lba", str(held_lba))
    with iscsi_export(IQN, "uasync"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            read10(s, 0x60, exp, held_lba)
            holds_its_command(h)
            read10(s, 0x61, exp + 1, 8)
            assert responses(s, 1) == [(0x61, 0)], "a held command stopped the connection"
            assert itt_of(ping(s, 0x62, exp + 2)) == 0x62
            abort_task(s, 0x63, 0x60, exp, exp + 2)
            s.settimeout(30)
            seen = []
            while True:
                hdr, _ = recv_pdu(s)
                op = hdr[0] & 0x3F
                seen.append((op, itt_of(hdr)))
                if op == TMF_RESPONSE:
                    assert hdr[2] == 0, f"ABORT TASK answered {hdr[2]}"
                    break
            # An aborted command gets no response (SAM: only the task
            # management function answers), before the answer or after.
            hdr = ping(s, 0x64, exp + 2)
            seen.append((hdr[0] & 0x3F, itt_of(hdr)))
            assert seen[-1][1] == 0x64, seen
            assert not [p for p in seen if p[1] == 0x60], seen
        finally:
            s.close()
    log = h.kill()
    assert re.search(r"^task management received: fn 0 ", log, re.M), log
    for _ in range(100):
        if not os.path.exists(os.path.join(ROOT, "devices/uasync")):
            break
        time.sleep(0.1)
    assert not os.path.exists(os.path.join(ROOT, "devices/uasync"))


def write10_immediate(s, itt, cmd_sn, lba, payload):
    """WRITE(10) of one block, all of it immediate data."""
    cdb = bytes([0x2A, 0, *lba.to_bytes(4, "big"), 0, 0, 1, 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20 | SIMPLE, dlen=len(payload), itt=itt, word20=len(payload),
                  cmd_sn=cmd_sn, rest=cdb, immediate=False) + payload)


def test_held_parse_blocks_nothing(handlers):
    """A READ whose PARSE a scst_user handler holds (parse_type CALL): the
    receive loop never waits for PARSE or ALLOC_MEM, so on the same
    connection a WRITE with immediate data (staged in the target's pages
    until the handler lends its buffer), a READ of it and a NOP-Out are
    answered meanwhile; ABORT TASK reaches the held command, which gets no
    response."""
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("uparse", 16 << 20)
    held_lba = 4000
    h = handlers("uparse", path, "-t", "2", "--parse", "call", "--hold-lba", str(held_lba))
    with iscsi_export(IQN, "uparse"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            read10(s, 0x70, exp, held_lba)
            assert holds_its_command(h), h.lines
            payload = os.urandom(512)
            write10_immediate(s, 0x71, exp + 1, 9, payload)
            assert responses(s, 1) == [(0x71, 0)], "a held PARSE stopped the connection"
            read10(s, 0x72, exp + 2, 9)
            s.settimeout(30)
            hdr, data = recv_pdu(s)
            assert hdr[0] & 0x3F == DATA_IN and itt_of(hdr) == 0x72, hdr.hex()
            assert data == payload, "the staged data-out did not reach the handler"
            if hdr[1] & 0x01:
                assert hdr[3] == 0, hdr.hex()
            else:
                assert responses(s, 1) == [(0x72, 0)]
            assert itt_of(ping(s, 0x73, exp + 3)) == 0x73
            abort_task(s, 0x74, 0x70, exp, exp + 3)
            seen = []
            while True:
                hdr, _ = recv_pdu(s)
                seen.append((hdr[0] & 0x3F, itt_of(hdr)))
                if hdr[0] & 0x3F == TMF_RESPONSE:
                    assert hdr[2] == 0, f"ABORT TASK answered {hdr[2]}"
                    break
            hdr = ping(s, 0x75, exp + 3)
            seen.append((hdr[0] & 0x3F, itt_of(hdr)))
            assert not [p for p in seen if p[1] == 0x70], seen
        finally:
            s.close()
    log = h.kill()
    assert "holding command" in log and "at PARSE" in log, log
    assert re.search(r"^replied to held command", log, re.M), log


def holds_commands(h, count):
    """Waits (up to 10 s) until handler `h` says it holds `count` commands."""
    for _ in range(100):
        if sum(line.startswith("holding command") for line in h.lines) >= count:
            return True
        time.sleep(0.1)
    return False


def test_user_device_has_many_commands_outstanding(handlers):
    """A scst_user device with one core worker (threads_num 1) and a
    handler with one thread: the handler holds three READs at once (each
    EXEC reached it while the others were held: no worker waits for a
    reply), a fourth is answered meanwhile, and ABORT TASK ends each held
    one, with no response of its own."""
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("umany", 16 << 20)
    held = [1000, 2000, 3000]
    args = ["-t", "1"]
    for lba in held:
        args += ["--hold-lba", str(lba)]
    h = handlers("umany", path, *args)
    mgmt("devices/umany/threads_num", "1")
    with iscsi_export(IQN, "umany"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            for i, lba in enumerate(held):
                read10(s, 0xC0 + i, exp + i, lba)
            assert holds_commands(h, 3), h.lines
            read10(s, 0xC3, exp + 3, 8)
            assert responses(s, 1) == [(0xC3, 0)], "held commands stopped the device"
            for i in range(3):
                abort_task(s, 0xD0 + i, 0xC0 + i, exp + i, exp + 4)
            s.settimeout(30)
            answered = []
            while len(answered) < 3:
                hdr, _ = recv_pdu(s)
                assert hdr[0] & 0x3F == TMF_RESPONSE, f"a held READ was answered: {hdr.hex()}"
                answered.append((itt_of(hdr), hdr[2]))
            assert sorted(answered) == [(0xD0 + i, 0) for i in range(3)], answered
            assert itt_of(ping(s, 0xD4, exp + 4)) == 0xD4
        finally:
            s.close()
    log = h.kill()
    assert len(re.findall(r"^replied to held command", log, re.M)) == 3, log


def test_user_command_times_out(handlers):
    """A READ the handler never answers fails after the device's timeout
    (the watchdog ends it: no worker waits for it) with HARDWARE ERROR,
    INTERNAL TARGET FAILURE; the connection goes on."""
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("utime", 16 << 20)
    h = handlers("utime", path, "--hold-lba", "500")
    mgmt("devices/utime/timeout", "2")
    with iscsi_export(IQN, "utime"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            read10(s, 0xE0, exp, 500)
            assert holds_its_command(h), h.lines
            s.settimeout(30)
            hdr, data = recv_pdu(s)
            assert hdr[0] & 0x3F == SCSI_RESPONSE and itt_of(hdr) == 0xE0, hdr.hex()
            assert hdr[3] == 2, f"status {hdr[3]:#x}"
            sense = data[2:]
            assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x04, 0x44, 0x00), sense.hex()
            assert itt_of(ping(s, 0xE1, exp + 1)) == 0xE1
        finally:
            s.close()
    h.kill()


# A device whose every I/O completes 2 s after submission: a buffered
# vdisk_fileio read that misses the page cache holds its worker that long.
STALL_NSEC = 2_000_000_000


@contextlib.contextmanager
def stalling_null_blk():
    """/dev/nullb0, completing every I/O STALL_NSEC after submission."""
    sh("modprobe", "null_blk", "nr_devices=1", "irqmode=2", f"completion_nsec={STALL_NSEC}",
       "gb=1")
    try:
        yield "/dev/nullb0"
    finally:
        sh("rmmod", "null_blk", check=False)


@pytest.fixture
def stalling_disk(scst):
    """vdisk_fileio `upool` on such a device, with one block cached."""
    with stalling_null_blk() as device:
        try:
            # One I/O per page read, not a readahead window of them.
            write("/sys/block/nullb0/queue/read_ahead_kb", "0")
            mgmt("handlers/vdisk_fileio/mgmt", f"add_device upool filename={device}")
            # The page cache of the device's inode is the one fileio reads
            # (warmed after the open, which may drop it).
            sh("dd", f"if={device}", "of=/dev/null", "bs=4k", "count=1", "status=none")
            yield "upool"
        finally:
            write(os.path.join(ROOT, "handlers/vdisk_fileio/mgmt"), "del_device upool")


def in_flight(disk="nullb0"):
    with open(f"/sys/block/{disk}/inflight") as f:
        return sum(int(n) for n in f.read().split())


def wait_for_in_flight(count, seconds):
    """Whether the stalling device has `count` I/Os in flight within
    `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if in_flight() >= count:
            return True
        time.sleep(0.02)
    return False


def wait_for_device_io():
    """Waits until the stalling device has an I/O in flight."""
    assert wait_for_in_flight(1, 5), "the uncached READ never reached the device"


def read_capacity10(s, itt, cmd_sn):
    """READ CAPACITY(10): vdisk_fileio answers it on a worker, always."""
    cdb = bytes([0x25]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x40 | SIMPLE, itt=itt, word20=8, cmd_sn=cmd_sn, rest=cdb,
                  immediate=False))


@pytest.mark.parametrize("pool", ["shared", "per_initiator"])
def test_threads_pool_type(stalling_disk, pool):
    """threads_num 1: a fileio READ that misses the page cache of a device
    that takes 2 s per I/O occupies the device's only worker. Another
    initiator's READ CAPACITY waits for it with the shared pool; with
    per_initiator each initiator has its own worker, so it is answered
    first. (A READ the page cache holds would need no worker at all: see
    test_cached_read_needs_no_worker.)"""
    sh("ip", "link", "set", "lo", "up")
    mgmt("devices/upool/threads_num", "1")
    mgmt("devices/upool/threads_pool_type", pool)
    key = "[key]\n" if pool == "per_initiator" else ""
    assert open(os.path.join(ROOT, "devices/upool/threads_pool_type")).read() == pool + "\n" + key
    with iscsi_export(IQN, "upool"):
        a, exp_a = logged_in(IQN, INITIATOR)
        b, exp_b = logged_in(IQN, OTHER, isid=b"\x80\x00\x00\x00\x00\x02")
        try:
            read10(a, 0xB0, exp_a, 1 << 20)
            # The uncached READ holds the worker (its I/O is at the device)
            # before the other command comes.
            wait_for_device_io()
            read_capacity10(b, 0xB1, exp_b)
            assert responses(b, 1) == [(0xB1, 0)]
            # Answered while the READ's I/O is still at the device (its
            # own worker), or only once it ended (the READ's worker).
            assert in_flight() == (1 if pool == "per_initiator" else 0)
            assert responses(a, 1) == [(0xB0, 0)]
        finally:
            a.close()
            b.close()


def test_cached_read_needs_no_worker(stalling_disk):
    """A fileio READ the page cache holds runs in the receive loop, without
    blocking: behind an uncached READ that holds the device's only worker
    (threads_num 1, 2 s per I/O), on the same connection, it is answered
    at once. Without that it would wait for the worker."""
    sh("ip", "link", "set", "lo", "up")
    mgmt("devices/upool/threads_num", "1")
    with iscsi_export(IQN, "upool"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            read10(s, 0xC0, exp, 1 << 20)
            wait_for_device_io()
            read10(s, 0xC1, exp + 1, 0)
            started = time.monotonic()
            assert responses(s, 1) == [(0xC1, 0)], "the cached READ waited"
            print(f"cached READ answered {time.monotonic() - started:.3f} s after it was sent")
            # The uncached one is still at the device.
            assert in_flight() == 1
            assert responses(s, 1) == [(0xC0, 0)]
        finally:
            s.close()


TRACING = "/sys/kernel/tracing"


@contextlib.contextmanager
def work_queued(workqueue):
    """Counts the work items queued on `workqueue` from here on (the
    workqueue_queue_work trace event): yields a function that says how
    many so far."""
    if not os.path.exists(f"{TRACING}/events"):
        sh("mount", "-t", "tracefs", "nodev", TRACING)
    event = f"{TRACING}/events/workqueue/workqueue_queue_work"
    with open(f"{event}/filter", "w") as f:
        f.write(f'workqueue == "{workqueue}"')
    with open(f"{TRACING}/trace", "w") as f:
        f.write("")
    with open(f"{event}/enable", "w") as f:
        f.write("1")

    def count():
        with open(f"{TRACING}/trace") as f:
            return sum(1 for line in f if not line.startswith("#"))
    try:
        yield count
    finally:
        with open(f"{event}/enable", "w") as f:
            f.write("0")
        with open(f"{event}/filter", "w") as f:
            f.write("0")


def test_tmpfs_read_needs_no_worker(scst):
    """A fileio READ of a tmpfs file (whose filesystem does not take
    RWF_NOWAIT) is copied from the file's pages in the receive loop when
    they are all there: sixteen 4 KiB READs queue no work on the core's
    workers, and return the file's data. A READ of a hole (no page yet)
    goes to a worker and returns zeros."""
    sh("ip", "link", "set", "lo", "up")
    mount = "/run/scst-tmpfs"
    os.makedirs(mount, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "size=8m", "scst-tmpfs", mount)
    try:
        path = f"{mount}/disk.img"
        data = os.urandom(64 << 10)
        with open(path, "wb") as f:
            f.write(data)
            f.truncate(1 << 20)
        mgmt("handlers/vdisk_fileio/mgmt", f"add_device utmpfs filename={path}")
        try:
            with iscsi_export(IQN, "utmpfs"):
                s, exp = logged_in(IQN, INITIATOR)
                try:
                    with work_queued("scst_cmd") as queued:
                        for i in range(16):
                            got = read_with_data(s, 0xD0 + i, exp, 8 * i, 8)[:2]
                            exp += 1
                            assert got == (data[4096 * i:4096 * (i + 1)], 0), i
                        assert queued() == 0, "a cached tmpfs READ went to a worker"
                        # 512 KiB in: a hole.
                        assert read_with_data(s, 0xE0, exp, 1024, 8)[:2] == (bytes(4096), 0)
                        assert queued() >= 1, "the hole's READ ran without a worker"
                finally:
                    s.close()
        finally:
            write(os.path.join(ROOT, "handlers/vdisk_fileio/mgmt"), "del_device utmpfs")
    finally:
        sh("umount", mount)


def test_full_window_reopens_with_each_status(stalling_disk):
    """QueuedCommands 4 and four uncached READs outstanding (2 s each at
    the device): the window is full. The status of the first to end
    carries a MaxCmdSN that admits one more command at once, rather than
    leaving the window shut until a later PDU."""
    sh("ip", "link", "set", "lo", "up")
    with iscsi_export(IQN, "upool"):
        mgmt(f"targets/iscsi/{IQN}/QueuedCommands", "4")
        s, exp = logged_in(IQN, INITIATOR)
        try:
            for i in range(4):
                read10(s, 0xE0 + i, exp + i, (1 << 20) + 64 * i)
            s.settimeout(30)
            while True:
                hdr, _ = recv_pdu(s)
                op = hdr[0] & 0x3F
                if op == SCSI_RESPONSE or (op == DATA_IN and hdr[1] & 0x01):
                    break
            exp_cmd_sn, max_cmd_sn = struct.unpack(">II", hdr[28:36])
            assert exp_cmd_sn == exp + 4
            assert max_cmd_sn == exp_cmd_sn, \
                f"window after one status: ExpCmdSN {exp_cmd_sn}, MaxCmdSN {max_cmd_sn}"
            assert sorted(responses(s, 3)) == [(0xE0 + i, 0) for i in range(4)
                                               if 0xE0 + i != itt_of(hdr)]
        finally:
            s.close()


@pytest.fixture
def stalling_blockio(scst):
    """vdisk_blockio `ublk` on a device that takes 2 s per I/O."""
    with stalling_null_blk() as device:
        try:
            mgmt("handlers/vdisk_blockio/mgmt", f"add_device ublk filename={device}")
            yield "ublk"
        finally:
            write(os.path.join(ROOT, "handlers/vdisk_blockio/mgmt"), "del_device ublk")


def write_same10_immediate(s, itt, cmd_sn, lba, payload):
    """WRITE SAME(10) of one block, its pattern as immediate data."""
    cdb = bytes([0x41, 0, *lba.to_bytes(4, "big"), 0, 0, 1, 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20 | SIMPLE, dlen=len(payload), itt=itt, word20=len(payload),
                  cmd_sn=cmd_sn, rest=cdb, immediate=False) + payload)


def test_blockio_io_needs_no_worker(stalling_blockio):
    """vdisk_blockio starts a READ's and a WRITE's bios in the receive loop
    (REQ_NOWAIT): behind a WRITE SAME that holds the device's only worker
    (threads_num 1) for the 2 s its I/O takes, a READ and then a WRITE on
    the same connection reach the device while the worker is still held,
    and all three are answered."""
    sh("ip", "link", "set", "lo", "up")
    mgmt("devices/ublk/threads_num", "1")
    with iscsi_export(IQN, "ublk"):
        s, exp = logged_in(IQN, INITIATOR)
        try:
            write_same10_immediate(s, 0xD0, exp, 8, b"\x5a" * 512)
            wait_for_device_io()
            read10(s, 0xD1, exp + 1, 16)
            assert wait_for_in_flight(2, 1.5), "the READ waited for the worker"
            write10_immediate(s, 0xD2, exp + 2, 24, b"\xa5" * 512)
            assert wait_for_in_flight(3, 1.5), "the WRITE waited for the worker"
            assert sorted(responses(s, 3)) == [(0xD0, 0), (0xD1, 0), (0xD2, 0)]
        finally:
            s.close()


@pytest.fixture
def page_cache_disk(scst):
    """vdisk_fileio, buffered, on a memory-backed null_blk device: unlike a
    tmpfs file, a block device can be read without blocking (RWF_NOWAIT),
    so reads the page cache holds run in the receive loop."""
    sh("modprobe", "null_blk", "nr_devices=1", "gb=1", "memory_backed=1")
    try:
        mgmt("handlers/vdisk_fileio/mgmt", "add_device pcache filename=/dev/nullb0")
        yield "pcache"
        mgmt("handlers/vdisk_fileio/mgmt", "del_device pcache")
    finally:
        sh("rmmod", "null_blk", check=False)


def test_page_cache_reads_verify_through_iscsi(page_cache_disk):
    """fio verify at QD32 through open-iscsi on that device: data read in
    the receive loop (cache hits) or on a worker (misses, and reads that
    found part of their range cached) is what was written."""
    sh("ip", "link", "set", "lo", "up")
    with iscsi_export(IQN, page_cache_disk), open_iscsi_login(IQN) as scsi_devices:
        dev = device_of(scsi_devices, "block/sd*")
        assert dev, "no disk from the iSCSI login"
        job = ["fio", "--name=verify", f"--filename={dev}", "--allow_file_create=0",
               "--direct=1", "--ioengine=libaio",
               "--iodepth=32", "--rw=randwrite", "--bsrange=4k-512k", "--size=32M",
               "--randseed=2612", "--verify=crc32c", "--verify_fatal=1",
               "--output-format=terse"]
        # Written, then read back from the target's page cache.
        r = subprocess.run(job + ["--do_verify=1"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        # Read back again once the target's page cache of the device is
        # dropped: misses, and reads that find part of their range cached.
        write("/proc/sys/vm/drop_caches", "3")
        r = subprocess.run(job + ["--verify_only=1"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr


def test_initiator_that_stops_reading_stalls_only_itself(target):
    """One initiator sends 32 reads of 1 MiB and never reads its socket:
    its responses wait for its connection's sender, not on the device's
    workers, so another initiator of the same device is served meanwhile;
    closing the stuck connection cleans everything up."""
    a, exp_a = logged_in(IQN, INITIATOR)
    b, exp_b = logged_in(IQN, OTHER, isid=b"\x80\x00\x00\x00\x00\x02")
    try:
        for i in range(32):
            read10(a, 0x100 + i, exp_a + i, (i * 2048) % 30000, blocks=2048)
        # Long enough for the target to fill the socket's buffers.
        time.sleep(3)
        for i in range(3):
            read10(b, 0x200 + i, exp_b + i, 8 * i, blocks=8)
            assert responses(b, 1, timeout=20) == [(0x200 + i, 0)], "another initiator starved"
    finally:
        a.close()
        b.close()


def test_threads_num_attribute(target):
    assert open(os.path.join(ROOT, "devices/async1/threads_num")).read().strip() == "8"
    assert open(os.path.join(ROOT, "devices/async1/threads_pool_type")).read().strip() == "shared"
    mgmt("devices/async1/threads_num", "2")
    assert open(os.path.join(ROOT, "devices/async1/threads_num")).read() == "2\n[key]\n"
    assert write(os.path.join(ROOT, "devices/async1/threads_num"), "0") != 0
    assert write(os.path.join(ROOT, "devices/async1/threads_pool_type"), "bogus") != 0
    mgmt("devices/async1/threads_pool_type", "per_initiator")
    assert open(os.path.join(ROOT, "devices/async1/threads_pool_type")).read() == \
        "per_initiator\n[key]\n"
    # Still serves with fewer workers.
    s, exp = logged_in(IQN, INITIATOR)
    try:
        for i in range(4):
            send_tur(s, 0x70 + i, exp + i, SIMPLE)
        assert sorted(responses(s, 4)) == [(0x70 + i, 0) for i in range(4)]
    finally:
        s.close()


# A slow device: its I/O completes 10 ms after submission.
SLOW_NSEC = 10_000_000


# Core workers the slow device may use at once: blockio completes its
# commands from the bios' end, so far more than this many reach the device.
SLOW_THREADS = 2


@pytest.fixture
def slow_disk(scst):
    """vdisk_blockio on a null_blk device whose every I/O completes after
    SLOW_NSEC (from a timer interrupt): how many commands reach it at once
    shows in its inflight counters."""
    sh("modprobe", "null_blk", "nr_devices=1", "irqmode=2", f"completion_nsec={SLOW_NSEC}",
       "gb=1", "hw_queue_depth=128", "memory_backed=1")
    try:
        mgmt("handlers/vdisk_blockio/mgmt", "add_device slow1 filename=/dev/nullb0")
        mgmt("devices/slow1/threads_num", str(SLOW_THREADS))
        yield "slow1"
        mgmt("handlers/vdisk_blockio/mgmt", "del_device slow1")
    finally:
        sh("rmmod", "null_blk", check=False)


def most_in_flight(dev, seconds):
    """The largest number of requests the null_blk device had in flight,
    sampled for `seconds`, while fio drives `dev` at queue depth 32."""
    fio = subprocess.Popen(["fio", "--name=qd32", f"--filename={dev}", "--allow_file_create=0",
                            "--direct=1",
                            "--ioengine=libaio", "--iodepth=32", "--bs=4k", "--rw=randread",
                            "--time_based", f"--runtime={seconds}", "--size=64M",
                            "--output-format=terse"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    most = 0
    while fio.poll() is None:
        with open("/sys/block/nullb0/inflight") as f:
            most = max(most, sum(int(n) for n in f.read().split()))
        time.sleep(0.02)
    out, err = fio.communicate()
    assert fio.returncode == 0, out + err
    return most


def verify_at_qd32(dev):
    """Writes and reads back, checksummed, at queue depth 32 in sizes that
    take several bios each: what completes from the bios' end is what was
    written."""
    r = subprocess.run(["fio", "--name=verify", f"--filename={dev}", "--allow_file_create=0",
                        "--direct=1",
                        "--ioengine=libaio", "--iodepth=32", "--rw=randwrite",
                        "--bsrange=4k-512k", "--size=32M", "--randrepeat=0",
                        "--verify=crc32c", "--verify_fatal=1", "--do_verify=1",
                        "--output-format=terse"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_slow_device_has_many_commands_through_scst_local(slow_disk):
    mgmt("targets/scst_local/mgmt", "add_target slow_t")
    mgmt("targets/scst_local/slow_t/luns/mgmt", f"add {slow_disk} 0")
    mgmt("targets/scst_local/mgmt", "add_session slow_t s1")
    sd, _ = devices(host_of("slow_t", "s1"))
    most = most_in_flight(sd, 5)
    print(f"scst_local, QD32 at the initiator: up to {most} I/Os in flight at the device")
    # A worker that started a command's bios goes on to the next command.
    assert most >= 4 * SLOW_THREADS, most
    verify_at_qd32(sd)


def test_slow_device_has_many_commands_through_iscsi(slow_disk):
    sh("ip", "link", "set", "lo", "up")
    with iscsi_export(IQN, slow_disk), open_iscsi_login(IQN) as scsi_devices:
        dev = device_of(scsi_devices, "block/sd*")
        assert dev, "no disk from the iSCSI login"
        most = most_in_flight(dev, 5)
        print(f"iSCSI, QD32 at the initiator: up to {most} I/Os in flight at the device")
        assert most >= 4 * SLOW_THREADS, most
        verify_at_qd32(dev)


CLEAR_TASK_SET = 4
TASK_ABORTED = 0x40


def clear_task_set(s, itt, cmd_sn):
    """CLEAR TASK SET on LUN 0 (immediate); returns the TMF response code."""
    s.sendall(bhs(0x02, 0x80 | CLEAR_TASK_SET, itt=itt, word20=0xFFFFFFFF, cmd_sn=cmd_sn))
    s.settimeout(30)
    hdr, _ = recv_pdu(s)
    assert hdr[0] & 0x3F == TMF_RESPONSE and itt_of(hdr) == itt, hdr.hex()
    return hdr[2]


def set_tas(s, itt, cmd_sn):
    """MODE SELECT(6) of the control page with TAS set, as immediate data;
    everything else as MODE SENSE reports it."""
    page = bytes([0x0A, 0x0A, 0x00, 0x10, 0x00, 0x40, 0, 0, 0xFF, 0xFF, 0, 0])
    params = bytes(4) + page
    cdb = bytes([0x15, 0x10, 0, 0, len(params), 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20 | SIMPLE, dlen=len(params), itt=itt, word20=len(params),
                  cmd_sn=cmd_sn, rest=cdb, immediate=False) + params)
    assert responses(s, 1) == [(itt, 0)], "MODE SELECT of TAS refused"


def tur_sense(s, itt, cmd_sn):
    """TEST UNIT READY: its status, and the sense key, ASC and ASCQ."""
    send_tur(s, itt, cmd_sn, SIMPLE)
    s.settimeout(30)
    hdr, data = recv_pdu(s)
    assert hdr[0] & 0x3F == SCSI_RESPONSE and itt_of(hdr) == itt, hdr.hex()
    sense = data[2:]
    if hdr[3] != 2 or len(sense) < 14:
        return hdr[3], None
    return hdr[3], (sense[2] & 0x0F, sense[12], sense[13])


@pytest.mark.parametrize("tas", [False, True])
def test_clear_task_set_from_another_initiator(target, tas):
    """CLEAR TASK SET aborts every initiator's commands to the LUN (the task
    set is shared). The other initiator's write awaiting its Data-Out and
    the ORDERED command queued behind it end without a response and its
    next command gets COMMANDS CLEARED BY ANOTHER INITIATOR (TAS 0), or both
    end with TASK ABORTED status and no unit attention (TAS 1)."""
    a, exp_a = logged_in(IQN, INITIATOR)
    if tas:
        set_tas(a, 0xA0, exp_a)
        exp_a += 1
    b, exp_b = logged_in(IQN, OTHER, isid=b"\x80\x00\x00\x00\x00\x02")
    try:
        ttt = write_awaiting_data(b, 0x90, exp_b)
        send_tur(b, 0x91, exp_b + 1, ORDERED)
        assert nothing_arrives(b, 0.5)
        assert clear_task_set(a, 0x92, exp_a) == 0
        data_out(b, 0x90, ttt, b"\x77" * 512)
        if tas:
            assert sorted(responses(b, 2)) == [(0x90, TASK_ABORTED), (0x91, TASK_ABORTED)]
            assert tur_sense(b, 0x93, exp_b + 2) == (0, None)
        else:
            assert nothing_arrives(b)
            # UNIT ATTENTION, COMMANDS CLEARED BY ANOTHER INITIATOR.
            assert tur_sense(b, 0x93, exp_b + 2) == (2, (0x6, 0x2F, 0x00))
            assert tur_sense(b, 0x94, exp_b + 3) == (0, None)
        # The initiator that cleared the task set has no unit attention.
        assert tur_sense(a, 0x95, exp_a) == (0, None)
    finally:
        a.close()
        b.close()
