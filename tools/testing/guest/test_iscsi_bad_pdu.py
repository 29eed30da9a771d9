# SPDX-License-Identifier: GPL-2.0
"""Hand-made PDUs against the iSCSI target. Bad ones each get a Reject or
a closed connection, and leave no session behind (guest-run fails the run on
any oops, warning or kmemleak report)."""

import os
import struct
import time

import pytest

from conftest import (RESERVED, ROOT, backing_file, bhs, closed, connect, dmesg_since,
                      login_request, mark_dmesg, mgmt, padded, ping, raw_full_feature, raw_login,
                      recv_pdu, sh)

IQN = "iqn.2026-11.org.scst-rs:bad"
INITIATOR = "iqn.2026-11.org.scst-rs:raw-client"


def login(isid=b"\x80\x00\x00\x00\x00\x01"):
    return raw_login(IQN, INITIATOR, isid)


def full_feature():
    return raw_full_feature(IQN, INITIATOR)


def sessions():
    return os.listdir(os.path.join(ROOT, "targets/iscsi", IQN, "sessions"))


def no_sessions_left():
    for _ in range(100):
        if not sessions():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def target(scst):
    sh("ip", "link", "set", "lo", "up")
    path = backing_file("bad-pdu", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device bad1 filename={path}")
    mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
    mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add bad1 0")
    mgmt(f"targets/iscsi/{IQN}/MaxRecvDataSegmentLength", "8192")
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    yield
    assert no_sessions_left(), "a session stayed after its connection closed"
    # The target still serves a clean login afterwards.
    s, exp, _ = full_feature()
    assert ping(s, 0x77, exp)[0] & 0x3F == 0x20
    s.close()
    assert no_sessions_left()
    mgmt("targets/iscsi/enabled", "0")


def test_raw_login_and_ping(target):
    s, exp, _ = full_feature()
    assert sessions() == [INITIATOR]
    rsp = ping(s, 5, exp)
    assert rsp[0] & 0x3F == 0x20 and int.from_bytes(rsp[16:20], "big") == 5
    s.close()


def test_unknown_opcode_is_rejected(target):
    s, exp, _ = full_feature()
    s.sendall(bhs(0x0F, 0x80, dlen=5, itt=9) + padded(b"hello"))
    hdr, data = recv_pdu(s)
    assert hdr[0] & 0x3F == 0x3F, f"expected a Reject, got opcode {hdr[0]:#x}"
    assert hdr[2] == 0x05, f"reason {hdr[2]:#x}: expected Command not supported"
    assert data[:1] == b"\x4f", "the Reject carries the offending header"
    # The connection goes on.
    assert ping(s, 6, exp)[0] & 0x3F == 0x20
    s.close()


def test_data_segment_beyond_max_recv(target):
    s, exp, _ = full_feature()
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20, dlen=65536, itt=3, word20=512, cmd_sn=exp, rest=cdb))
    s.sendall(b"\0" * 1024)
    assert closed(s), "a data segment beyond MaxRecvDataSegmentLength left the connection open"
    s.close()


def test_cmd_sn_outside_window_is_dropped(target):
    s, exp, _ = full_feature()
    # Non-immediate NOP-Out far beyond MaxCmdSN: dropped, unanswered.
    s.sendall(bhs(0x00, 0x80, itt=0x100, word20=RESERVED, cmd_sn=exp + 1000, immediate=False))
    rsp = ping(s, 0x101, exp)
    assert int.from_bytes(rsp[16:20], "big") == 0x101, "the out-of-window command was answered"
    s.close()


def test_garbage_login_keys(target):
    s = connect()
    s.sendall(login_request([b"\xff\xfe=", b"no-equals-sign", b"InitiatorName=", b"x" * 300],
                            isid=b"\x80\x00\x00\x00\x00\x02"))
    rsp, _ = recv_pdu(s)
    assert rsp[0] & 0x3F == 0x23 and rsp[36] == 0x02, f"status {rsp[36]:#x}/{rsp[37]:#x}"
    assert closed(s)
    s.close()


def test_truncated_header_and_close(target):
    s = connect()
    s.sendall(bytes([0x43, 0x87]) + b"\0" * 18)
    s.close()
    s, exp, _ = full_feature()
    s.sendall(bhs(0x00, 0x80, itt=1, word20=RESERVED, cmd_sn=exp)[:30])
    s.close()


def test_connection_closed_mid_data(target):
    s, exp, _ = full_feature()
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0]).ljust(16, b"\0")
    # WRITE(10) of 8 blocks with 4 KiB of immediate data, cut short.
    s.sendall(bhs(0x01, 0x80 | 0x20, dlen=4096, itt=4, word20=4096, cmd_sn=exp, rest=cdb))
    s.sendall(b"\xab" * 100)
    s.close()


def test_data_out_for_unknown_task_and_bad_offset(target):
    s, exp, _ = full_feature()
    # Data-Out for a task that does not exist: discarded silently.
    s.sendall(bhs(0x05, 0x80, dlen=512, itt=0x999, word20=RESERVED, immediate=False) + b"\0" * 512)
    assert ping(s, 0x10, exp)[0] & 0x3F == 0x20
    # A write waiting for data, then Data-Out past its length: Reject, close.
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]).ljust(16, b"\0")
    s.sendall(bhs(0x01, 0x80 | 0x20, dlen=0, itt=0x20, word20=512, cmd_sn=exp, rest=cdb))
    r2t, _ = recv_pdu(s)
    assert r2t[0] & 0x3F == 0x31, f"expected R2T, got {r2t[0]:#x}"
    ttt = int.from_bytes(r2t[20:24], "big")
    data_out = bytearray(bhs(0x05, 0x80, dlen=512, itt=0x20, word20=ttt, immediate=False))
    data_out[40:44] = (4096).to_bytes(4, "big")  # BufferOffset beyond 512
    s.sendall(bytes(data_out) + b"\0" * 512)
    hdr, _ = recv_pdu(s)
    assert hdr[0] & 0x3F == 0x3F, f"expected a Reject, got {hdr[0]:#x}"
    assert closed(s)
    s.close()


def test_async_message_when_luns_change(target):
    """A LUN added to the target reaches a logged-in initiator at once as an
    Async Message (SCSI event, REPORTED LUNS DATA HAS CHANGED); the unit
    attention still waits for its next command."""
    s, exp, _ = full_feature()
    path = backing_file("async", 8 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device async1 filename={path}")
    try:
        mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add async1 1")
        s.settimeout(20)
        hdr, data = recv_pdu(s)
        assert hdr[0] & 0x3F == 0x32, f"expected an Async Message, got opcode {hdr[0]:#x}"
        assert hdr[16:20] == b"\xff" * 4 and hdr[36] == 0, hdr.hex()
        sense = data[2:2 + int.from_bytes(data[:2], "big")]
        assert sense[2] & 0x0F == 0x06 and sense[12:14] == b"\x3f\x0e", sense.hex()
        # TEST UNIT READY on LUN 0 until GOOD: the unit attentions of the
        # new nexus (power on/reset first), among them the same sense.
        seen = []
        for i in range(4):
            s.sendall(bhs(0x01, 0x81, itt=8 + i, cmd_sn=exp + i, rest=bytes(16),
                          immediate=False))
            hdr, data = recv_pdu(s)
            assert hdr[0] & 0x3F == 0x21, hdr.hex()
            if hdr[3] == 0:
                break
            assert hdr[3] == 0x02, hdr.hex()
            seen.append(data[2:][12:14])
        assert b"\x3f\x0e" in seen, [x.hex() for x in seen]
        s.close()
        assert no_sessions_left()
    finally:
        s.close()
        mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "del 1")
        mgmt("handlers/vdisk_fileio/mgmt", "del_device async1")


def abort_task(s, itt, ref_itt, ref_cmd_sn, cmd_sn):
    """ABORT TASK (immediate); returns the TMF response code."""
    rest = struct.pack(">II", ref_cmd_sn, 0)
    s.sendall(bhs(0x02, 0x80 | 0x01, itt=itt, word20=ref_itt, cmd_sn=cmd_sn, rest=rest))
    hdr, _ = recv_pdu(s)
    assert hdr[0] & 0x3F == 0x22, f"expected a TMF response, got opcode {hdr[0]:#x}"
    return hdr[2]


def test_abort_task(target):
    """ABORT TASK of a command already answered: "task does not exist";
    of a write still waiting for its data: "function complete", and the
    write is never answered."""
    s, exp, _ = full_feature()
    try:
        s.sendall(bhs(0x01, 0x81, itt=0x10, cmd_sn=exp, rest=bytes(16), immediate=False))
        hdr, _ = recv_pdu(s)
        assert hdr[0] & 0x3F == 0x21
        assert abort_task(s, 0x11, 0x10, exp, exp + 1) == 1
        # WRITE(10) of 8 blocks without data: the target asks for it with R2T.
        cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0]).ljust(16, b"\0")
        s.sendall(bhs(0x01, 0x80 | 0x20 | 0x01, itt=0x12, word20=4096, cmd_sn=exp + 1,
                      rest=cdb, immediate=False))
        hdr, _ = recv_pdu(s)
        assert hdr[0] & 0x3F == 0x31, f"expected an R2T, got opcode {hdr[0]:#x}"
        assert abort_task(s, 0x13, 0x12, exp + 1, exp + 2) == 0
        # The next PDU answers this ping, not the write.
        assert ping(s, 0x14, exp + 2)[0] & 0x3F == 0x20
    finally:
        s.close()


def test_login_flood_is_rate_limited_in_the_log(target):
    """Each refused login logs its connection, its refusal and its end:
    200 of them in a row reach the kernel log within the kernel's limit
    for network messages (net_ratelimit: a burst of 10 per 5 s by
    default), which says how many it suppressed; the target still serves
    (the fixture logs in after)."""
    marker = f"scst-test: login flood {time.time()}"
    mark_dmesg(marker)
    start = time.monotonic()

    def refused_login(i):
        s = connect()
        keys = [b"InitiatorName=" + INITIATOR.encode(),
                b"TargetName=iqn.2026-11.org.scst-rs:no-such-target", b"SessionType=Normal"]
        s.sendall(login_request(keys, isid=bytes([0x80, 0, 0, 0, i >> 8, i & 0xFF])))
        hdr, _ = recv_pdu(s)
        s.close()
        return hdr[36] != 0

    refused = sum(refused_login(i) for i in range(200))
    # The limiter reports what it suppressed once its next interval starts.
    time.sleep(max(0.0, start + 5.5 - time.monotonic()))
    refused += refused_login(200)
    elapsed = time.monotonic() - start
    assert refused == 201, refused
    log = dmesg_since(marker)
    lines = [line for line in log.splitlines() if "iscsi:" in line]
    print(f"{len(lines)} iscsi log lines for 200 refused logins in {elapsed:.1f} s")
    # Unlimited, each login logs three lines (600 in all). The limit lets
    # 10 through per 5 s, and a message not yet counted as suppressed.
    assert len(lines) <= 10 * (elapsed / 5 + 2), len(lines)
    assert "callbacks suppressed" in log, log[-2000:]


def test_silent_connection_is_closed_during_login(target):
    """A peer that connects and sends nothing holds its connection (and a
    worker) only for the login phase's 15 s."""
    s = connect()
    start = time.monotonic()
    try:
        assert closed(s, timeout=40), "a silent connection stayed open"
    finally:
        s.close()
    elapsed = time.monotonic() - start
    print(f"silent connection closed after {elapsed:.1f} s")
    assert elapsed >= 10, elapsed


# scst_iscsi's MAX_CONNECTIONS.
MAX_CONNECTIONS = 128


def test_connection_limit(target):
    """The driver serves MAX_CONNECTIONS connections at once; the next is
    refused instead of waiting for a worker: its Login Request is answered
    "out of resources" (0x0302) and the connection closed. Once one closes
    a login succeeds again (the fixture logs in after)."""
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            held.append(connect())
        # Every one of them is being served (none was refused).
        for s in held:
            s.settimeout(0)
            try:
                assert s.recv(1) != b"", "a connection under the limit was closed"
            except BlockingIOError:
                pass
        extra = connect()
        try:
            extra.settimeout(10)
            extra.sendall(login_request([f"InitiatorName={INITIATOR}".encode(),
                                         f"TargetName={IQN}".encode()]))
            rsp, data = recv_pdu(extra)
            assert rsp[0] & 0x3F == 0x23, f"opcode {rsp[0] & 0x3F:#x}"
            assert (rsp[36], rsp[37]) == (0x03, 0x02), f"status {rsp[36]:#x}/{rsp[37]:#x}"
            assert int.from_bytes(rsp[16:20], "big") == 1, "ITT of the request"
            assert closed(extra, timeout=10), "a connection past the limit was served"
        finally:
            extra.close()
    finally:
        for s in held:
            s.close()
