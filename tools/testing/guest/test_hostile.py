# SPDX-License-Identifier: GPL-2.0
"""An initiator the target does not control: what it sends costs the
target memory only once the command is admitted, and never more than a
bound per session. Raw iSCSI over loopback, after a real login."""

import os
import time

import pytest

from conftest import (ROOT, backing_file, bhs, closed, iscsi_export, mgmt, ping, raw_full_feature,
                      recv_pdu)

IQN = "iqn.2026-12.org.scst-rs:hostile"
INITIATOR = "iqn.2026-12.org.scst-rs:hostile-client"

SCSI_RESPONSE, R2T, TMF_RESPONSE = 0x21, 0x31, 0x22
GOOD, CHECK_CONDITION, TASK_SET_FULL = 0x00, 0x02, 0x28

# A session's bound on the target's own pages its commands hold
# (scst_core/buffer.rs MAX_SESSION_DATA), and a write that takes an
# eighth of it.
SESSION_DATA = 128 << 20
BIG = 16 << 20


@pytest.fixture
def target(scst):
    path = backing_file("hostile", BIG)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device hostile1 filename={path}")
    with iscsi_export(IQN, "hostile1"):
        yield


def itt_of(hdr):
    return int.from_bytes(hdr[16:20], "big")


def send_write10(s, itt, cmd_sn, length, lun=0, immediate=b""):
    """WRITE(10) of `length` bytes at LBA 0, final (no unsolicited Data-Out
    after `immediate`): the target asks for the rest with R2T."""
    blocks = length // 512
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, *blocks.to_bytes(2, "big"), 0])
    s.sendall(bhs(0x01, 0x80 | 0x20 | 0x01, dlen=len(immediate), itt=itt, word20=length,
                  cmd_sn=cmd_sn, rest=cdb, lun=lun, immediate=False)
              + immediate + b"\0" * (-len(immediate) % 4))


def next_pdu(s):
    s.settimeout(30)
    return recv_pdu(s)


def logged_in(isid=b"\x80\x00\x00\x00\x00\x01"):
    s, exp, _ = raw_full_feature(IQN, INITIATOR, isid)
    # The new nexus' unit attention first, so that what follows is ours.
    s.sendall(bhs(0x01, 0x80 | 0x01, itt=0x1, cmd_sn=exp, rest=bytes(16), immediate=False))
    hdr, _ = next_pdu(s)
    assert hdr[0] & 0x3F == SCSI_RESPONSE, hdr.hex()
    return s, exp + 1


def test_write_to_absent_lun_takes_no_data(target):
    """A 16 MiB WRITE to a LUN that does not exist, with immediate data: the
    target answers LOGICAL UNIT NOT SUPPORTED at once, asks for none of the
    data (no R2T) and allocates none of it; the connection goes on."""
    s, exp = logged_in()
    try:
        send_write10(s, 0x10, exp, BIG, lun=0x0007 << 48, immediate=b"\x5a" * 4096)
        hdr, data = next_pdu(s)
        assert hdr[0] & 0x3F == SCSI_RESPONSE and itt_of(hdr) == 0x10, \
            f"opcode {hdr[0] & 0x3F:#x} (an R2T asks for data no LUN takes)"
        assert hdr[3] == CHECK_CONDITION, f"status {hdr[3]:#x}"
        sense = data[2:]
        assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x05, 0x25, 0x00), sense.hex()
        assert itt_of(ping(s, 0x11, exp + 1)) == 0x11
    finally:
        s.close()


def abort_task(s, itt, cmd_sn, ref_itt, ref_cmd_sn):
    """ABORT TASK of `ref_itt` (immediate); returns the TMF response code."""
    s.sendall(bhs(0x02, 0x80 | 0x01, itt=itt, word20=ref_itt, cmd_sn=cmd_sn,
                  rest=ref_cmd_sn.to_bytes(4, "big")))
    hdr, _ = next_pdu(s)
    assert hdr[0] & 0x3F == TMF_RESPONSE and itt_of(hdr) == itt, hdr.hex()
    return hdr[2]


def test_session_data_is_bounded(target):
    """Writes that wait for their data hold their buffers: one session gets
    at most SESSION_DATA of them. Eight 16 MiB writes are each asked for
    their data (R2T); the ninth is answered TASK SET FULL at once, and the
    session's counter shows it. Once one of the eight is aborted its memory
    is given back: the next write gets its R2T."""
    s, exp = logged_in()
    try:
        n = SESSION_DATA // BIG
        for i in range(n):
            send_write10(s, 0x20 + i, exp + i, BIG)
            hdr, _ = next_pdu(s)
            assert hdr[0] & 0x3F == R2T and itt_of(hdr) == 0x20 + i, hdr.hex()
        send_write10(s, 0x20 + n, exp + n, BIG)
        hdr, _ = next_pdu(s)
        assert hdr[0] & 0x3F == SCSI_RESPONSE and itt_of(hdr) == 0x20 + n, hdr.hex()
        assert hdr[3] == TASK_SET_FULL, f"status {hdr[3]:#x}"
        sessions = os.path.join(ROOT, "targets/iscsi", IQN, "sessions")
        [session] = os.listdir(sessions)
        assert open(os.path.join(sessions, session, "task_set_full")).read().strip() == "1"
        # Still served: NOP-Out (immediate: CmdSN stays).
        assert itt_of(ping(s, 0x30, exp + n + 1)) == 0x30
        assert abort_task(s, 0x31, exp + n + 1, 0x20, exp) == 0
        send_write10(s, 0x32, exp + n + 1, BIG)
        hdr, _ = next_pdu(s)
        assert hdr[0] & 0x3F == R2T and itt_of(hdr) == 0x32, hdr.hex()
    finally:
        s.close()


def test_pdu_that_stops_halfway_closes_the_connection(target):
    """A NOP-Out whose data segment stops after 100 of 4096 bytes: the
    connection is closed once nothing more arrives for RspTimeout (3 s
    here). Before, the receive loop waited for the rest for ever, holding
    the connection (and one of the driver's connection slots). An idle
    connection, between PDUs, is not cut by that limit."""
    mgmt(f"targets/iscsi/{IQN}/RspTimeout", "3")
    idle, exp_idle = logged_in(isid=b"\x80\x00\x00\x00\x00\x02")
    s, exp = logged_in()
    try:
        s.sendall(bhs(0x00, 0x80, dlen=4096, itt=0x50, word20=0xFFFFFFFF, cmd_sn=exp)
                  + b"\x11" * 100)
        started = time.monotonic()
        assert closed(s, timeout=30), "the connection waits for the rest of the PDU for ever"
        print(f"closed {time.monotonic() - started:.1f} s after the PDU stopped")
        # Longer idle than RspTimeout, and still served.
        time.sleep(max(0.0, 4 - (time.monotonic() - started)))
        assert itt_of(ping(idle, 0x51, exp_idle)) == 0x51
    finally:
        s.close()
        idle.close()
