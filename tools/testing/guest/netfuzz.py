# SPDX-License-Identifier: GPL-2.0
"""A network fuzzer against the live iSCSI target, over loopback in the
guest: mutated and random PDUs (headers from the codec fuzzer's seeds),
valid PDUs in invalid orders, truncated and split segments, wrong and
missing header and data digests, ITT reuse,
forged Target Transfer Tags, DataSN and offsets out of range, task
management for unknown tags, Logout in the middle of a command, and
mutated login requests at every login stage. Each case runs on a
connection of its own, after a real login for the full feature phase,
and ends with a close (FIN or RST); every few cases, and at the end, a
fresh session must still be served.

A case is a function of the seed and its number alone, so a failure is
reproduced with the same seed and case. `test_netfuzz.py` runs a bounded
slice in CI; `tools/testing/netfuzz` runs long ones.

In the guest, with scst.ko loaded and a target set up by the caller:

    python3 netfuzz.py --seed S --cases N [--first K] [--iqn IQN]
"""

import argparse
import glob
import os
import random
import select
import socket
import struct
import sys
import time

from conftest import (REPO, bhs, closed, connect, digest, padded, raw_full_feature, recv_exact,
                      recv_pdu)

SEEDS = os.path.join(REPO, "tools/testing/fuzz/seeds")
INITIATOR = "iqn.2026-12.org.scst-rs:netfuzz"

# Opcodes an initiator sends (RFC 7143 11.1.1), and a few it must not.
INITIATOR_OPCODES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1C, 0x1E]
TARGET_OPCODES = [0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3C, 0x3F]

# A LUN-0 device of at least this many 512-byte blocks.
BLOCKS = 8192


def seed_headers(kind):
    """The first 48 bytes (the header) of each committed seed of `kind`."""
    out = []
    for path in sorted(glob.glob(os.path.join(SEEDS, kind, "*"))):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) >= 48:
            out.append(data[:48])
    return out


class Conn:
    """One connection of a case: sends what the case says and reads what
    the target answers, never blocking for long."""

    def __init__(self, sock, cmd_sn):
        self.s = sock
        self.cmd_sn = cmd_sn
        self.received = 0

    def send(self, data, rng, split=False):
        try:
            if not split:
                self.s.sendall(data)
                return True
            at = 0
            while at < len(data):
                n = rng.choice([1, 2, 3, 7, 48, 100, 512])
                self.s.sendall(data[at:at + n])
                at += n
                if rng.random() < 0.2:
                    time.sleep(0.002)
            return True
        except OSError:
            return False

    def drain(self, seconds):
        """Reads (and drops) what arrives for `seconds`; False once closed."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            ready, _, _ = select.select([self.s], [], [], left)
            if not ready:
                return True
            try:
                chunk = self.s.recv(65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.received += len(chunk)

    def close(self, rng):
        if rng.random() < 0.5:
            # RST instead of FIN.
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()

    def next_sn(self):
        sn = self.cmd_sn
        self.cmd_sn = (self.cmd_sn + 1) & 0xFFFFFFFF
        return sn


def scsi_cmd(itt, cmd_sn, cdb, edtl, read=False, write=False, final=True, data=b"",
             attr=1, lun=0):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | attr
    return bhs(0x01, flags, dlen=len(data), itt=itt, word20=edtl, cmd_sn=cmd_sn,
               rest=cdb, lun=lun, immediate=False) + padded(data)


def rw10(op, lba, blocks):
    return bytes([op, 0, *lba.to_bytes(4, "big"), 0, *blocks.to_bytes(2, "big"), 0])


def data_out(itt, ttt, offset, data, data_sn=0, final=True, lun=0):
    rest = struct.pack(">III", 0, data_sn, offset)
    return bhs(0x05, 0x80 if final else 0, dlen=len(data), itt=itt, word20=ttt, rest=rest,
               lun=lun, immediate=False) + padded(data)


def mutate(rng, hdr):
    """A header with a few fields changed: where a codec is most likely to
    trust what it reads."""
    h = bytearray(hdr)
    for _ in range(rng.randint(1, 4)):
        where = rng.choice(["opcode", "flags", "ahs", "dlen", "byte", "bit", "itt", "word"])
        if where == "opcode":
            h[0] = (h[0] & 0x40) | rng.choice(INITIATOR_OPCODES + TARGET_OPCODES + [rng.randrange(64)])
        elif where == "flags":
            h[1] = rng.randrange(256)
        elif where == "ahs":
            h[4] = rng.choice([0, 1, 2, 255, rng.randrange(256)])
        elif where == "dlen":
            h[5:8] = rng.choice([0, 1, 3, 48, 4096, 8192, 262144, 0xFFFFFF,
                                 rng.randrange(1 << 24)]).to_bytes(3, "big")
        elif where == "byte":
            h[rng.randrange(48)] = rng.randrange(256)
        elif where == "bit":
            i = rng.randrange(48 * 8)
            h[i // 8] ^= 1 << (i % 8)
        elif where == "itt":
            h[16:20] = rng.choice([0, 0xFFFFFFFF, rng.randrange(1 << 32)]).to_bytes(4, "big")
        else:
            at = rng.choice([20, 24, 28, 32, 36, 40, 44])
            h[at:at + 4] = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)]
                                      ).to_bytes(4, "big")
    return bytes(h)


def with_segment(rng, hdr):
    """`hdr` and a data segment as its length says, or shorter (truncated:
    the close comes first), capped so a case stays small."""
    dlen = int.from_bytes(hdr[5:8], "big")
    ahs = hdr[4] * 4
    n = min(dlen, 65536) if rng.random() < 0.8 else rng.randrange(min(dlen, 65536) + 1)
    return hdr + rng.randbytes(min(ahs, 1024)) + rng.randbytes(n) + bytes(-n % 4)


# --- the cases of the full feature phase ---------------------------------

def case_mutated(rng, c, headers):
    pdu = with_segment(rng, mutate(rng, rng.choice(headers)))
    c.send(pdu, rng, split=rng.random() < 0.3)


def case_random(rng, c, _headers):
    hdr = bytearray(rng.randbytes(48))
    if rng.random() < 0.7:
        hdr[5:8] = rng.randrange(1024).to_bytes(3, "big")
        hdr[4] = 0
    c.send(with_segment(rng, bytes(hdr)), rng)


def case_write_orders(rng, c, _headers):
    """A write and its Data-Out in valid pieces, sent in a wrong order,
    repeated or left out."""
    itt = rng.randrange(1, 1 << 16)
    blocks = rng.choice([1, 8, 64, 256])
    edtl = blocks * 512
    sn = c.next_sn()
    pieces = [scsi_cmd(itt, sn, rw10(0x2A, rng.randrange(BLOCKS - blocks), blocks), edtl,
                       write=True, final=rng.random() < 0.5)]
    at, data_sn = 0, 0
    while at < edtl:
        n = min(edtl - at, rng.choice([512, 4096, 8192]))
        pieces.append(data_out(itt, 0xFFFFFFFF, at, rng.randbytes(n), data_sn=data_sn,
                               final=at + n >= edtl))
        at += n
        data_sn += 1
    op = rng.choice(["shuffle", "duplicate", "drop", "reverse"])
    if op == "shuffle":
        rng.shuffle(pieces)
    elif op == "duplicate":
        i = rng.randrange(len(pieces))
        pieces.insert(rng.randrange(len(pieces) + 1), pieces[i])
    elif op == "drop" and len(pieces) > 1:
        del pieces[rng.randrange(1, len(pieces))]
    else:
        pieces.reverse()
    for p in pieces:
        if not c.send(p, rng):
            return


def case_itt_reuse(rng, c, _headers):
    itt = rng.randrange(1 << 16)
    for _ in range(rng.randint(2, 4)):
        op = rng.choice([0x28, 0x2A])
        edtl = 4096
        c.send(scsi_cmd(itt, c.next_sn(), rw10(op, rng.randrange(BLOCKS - 8), 8), edtl,
                        read=op == 0x28, write=op == 0x2A, final=True), rng)


def case_r2t_forged(rng, c, _headers):
    """A write waiting for its R2T's data, then Data-Out with a forged tag,
    offset or DataSN."""
    itt = rng.randrange(1 << 16)
    edtl = rng.choice([4096, 65536, 262144])
    c.send(scsi_cmd(itt, c.next_sn(), rw10(0x2A, 0, edtl // 512), edtl, write=True), rng)
    c.drain(0.05)
    for _ in range(rng.randint(1, 3)):
        ttt = rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)])
        offset = rng.choice([0, edtl, edtl - 512, 0xFFFFFE00, rng.randrange(1 << 32)])
        data_sn = rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)])
        n = rng.choice([0, 512, 4096])
        c.send(data_out(rng.choice([itt, itt + 1]), ttt, offset, rng.randbytes(n),
                        data_sn=data_sn, final=rng.random() < 0.5), rng)


def case_task_mgmt(rng, c, _headers):
    """Task management for tags that exist, tags that do not, odd LUNs."""
    itt = rng.randrange(1 << 16)
    if rng.random() < 0.5:
        c.send(scsi_cmd(itt, c.next_sn(), rw10(0x2A, 0, 8), 4096, write=True), rng)
    for _ in range(rng.randint(1, 3)):
        function = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 14, 0, 127])
        ref = rng.choice([itt, rng.randrange(1 << 32), 0xFFFFFFFF])
        lun = rng.choice([0, 1 << 48, 0xFFFFFFFFFFFFFFFF, rng.randrange(1 << 64)])
        rest = struct.pack(">II", rng.choice([c.cmd_sn, rng.randrange(1 << 32)]), 0)
        c.send(bhs(0x02, 0x80 | function, itt=rng.randrange(1 << 32), word20=ref,
                   cmd_sn=c.cmd_sn, rest=rest, lun=lun), rng)


def case_logout_mid_command(rng, c, _headers):
    itt = rng.randrange(1 << 16)
    c.send(scsi_cmd(itt, c.next_sn(), rw10(0x2A, 0, 64), 32768, write=True), rng)
    reason = rng.choice([0, 1, 2, 3, 0x7F])
    c.send(bhs(0x06, 0x80 | reason, itt=itt + 1, cmd_sn=c.cmd_sn, immediate=True), rng)
    if rng.random() < 0.5:
        c.send(data_out(itt, 0xFFFFFFFF, 0, rng.randbytes(4096)), rng)


def case_split_commands(rng, c, _headers):
    """Valid commands whose bytes arrive a few at a time."""
    for _ in range(rng.randint(1, 4)):
        itt = rng.randrange(1 << 16)
        if rng.random() < 0.5:
            pdu = scsi_cmd(itt, c.next_sn(), rw10(0x28, rng.randrange(BLOCKS - 8), 8), 4096,
                           read=True)
        else:
            pdu = scsi_cmd(itt, c.next_sn(), rw10(0x2A, rng.randrange(BLOCKS - 8), 8), 4096,
                           write=True, data=rng.randbytes(4096))
        if not c.send(pdu, rng, split=True):
            return


def case_window(rng, c, _headers):
    """Commands far outside the CmdSN window, and immediate ones in a burst."""
    for _ in range(rng.randint(1, 40)):
        sn = rng.choice([c.cmd_sn + 10000, c.cmd_sn - 5, rng.randrange(1 << 32), c.cmd_sn])
        pdu = bytearray(scsi_cmd(rng.randrange(1 << 32), sn & 0xFFFFFFFF,
                                 bytes([0x00]), 0))
        if rng.random() < 0.5:
            pdu[0] |= 0x40
        if not c.send(bytes(pdu), rng):
            return


def with_digests(pdu, header_ok=True, data_ok=True):
    """`pdu` (a header and its padded data segment) as a session with
    CRC32C header and data digests carries it; a wrong digest where told."""
    hdr, seg = pdu[:48], pdu[48:]
    hd = bytearray(digest(hdr))
    if not header_ok:
        hd[0] ^= 0x01
    out = hdr + bytes(hd)
    if seg:
        dd = bytearray(digest(seg))
        if not data_ok:
            dd[3] ^= 0x80
        out += seg + bytes(dd)
    return out


def recv_digested(s, skip=(0x20, 0x32)):
    """The next PDU of a digested session whose opcode is not in `skip`
    (NOP-In pings and Asynchronous Messages); each of its digests must be
    right."""
    while True:
        hdr = recv_exact(s, 48)
        assert recv_exact(s, 4) == digest(hdr), f"wrong header digest on {hdr[:8].hex()}"
        dlen = int.from_bytes(hdr[5:8], "big")
        if dlen:
            seg = recv_exact(s, dlen + (-dlen % 4))
            assert recv_exact(s, 4) == digest(seg), f"wrong data digest on {hdr[:8].hex()}"
        if hdr[0] & 0x3F not in skip:
            return hdr


def case_digests(rng, c, headers):
    """A session with CRC32C header and data digests (run_case logs it in
    so): a ping and a write with right digests are answered with right
    digests; then a wrong header digest closes the connection, a wrong
    data digest is rejected (reason 0x02, data digest error) before the
    close, a PDU with no digests at all closes it, or a mutated header
    with a right digest meets the codec."""
    lba = rng.randrange(BLOCKS - 1)
    write = scsi_cmd(0x11, c.next_sn(), rw10(0x2A, lba, 1), 512, write=True,
                     data=rng.randbytes(512))
    try:
        c.s.sendall(with_digests(bhs(0x00, 0x80, itt=0x10, word20=0xFFFFFFFF,
                                     cmd_sn=c.cmd_sn)))
        assert recv_digested(c.s, skip=(0x32,))[0] & 0x3F == 0x20, "no NOP-In for the ping"
        c.s.sendall(with_digests(write))
        assert recv_digested(c.s)[0] & 0x3F == 0x21, "no SCSI Response for the write"
    except (OSError, EOFError) as e:
        raise AssertionError(f"a digested session failed on right digests: {e!r}") from e
    fault = rng.choice(["header", "data", "missing", "mutated"])
    if fault == "header":
        pdu = with_digests(bhs(0x00, 0x80, itt=0x12, word20=0xFFFFFFFF, cmd_sn=c.cmd_sn),
                           header_ok=False)
    elif fault == "data":
        pdu = with_digests(scsi_cmd(0x12, c.next_sn(), rw10(0x2A, lba, 1), 512, write=True,
                                    data=rng.randbytes(512)), data_ok=False)
    elif fault == "missing":
        pdu = bhs(0x00, 0x80, itt=0x12, word20=0xFFFFFFFF, cmd_sn=c.cmd_sn)
    else:
        c.send(with_digests(with_segment(rng, mutate(rng, rng.choice(headers)))), rng)
        return fault
    c.send(pdu, rng)
    if fault == "missing":
        # The next PDU's first bytes stand in for the missing digest.
        c.send(with_digests(bhs(0x00, 0x80, itt=0x13, word20=0xFFFFFFFF, cmd_sn=c.cmd_sn)),
               rng)
    if fault == "data":
        hdr = recv_digested(c.s)
        assert hdr[0] & 0x3F == 0x3F and hdr[2] == 0x02, \
            f"a wrong data digest got {hdr[:4].hex()}, not Reject 0x02"
    assert closed(c.s, 10), f"the connection stayed open after a {fault} digest fault"
    return fault


FFP_CASES = [case_mutated, case_mutated, case_random, case_write_orders, case_itt_reuse,
             case_r2t_forged, case_task_mgmt, case_logout_mid_command, case_split_commands,
             case_window, case_digests]


# --- the login phase ------------------------------------------------------

def case_login(rng, iqn, login_headers):
    """A connection that never reaches full feature phase properly: mutated
    Login Requests (from the seeds, or with the right keys and a wrong
    header), a non-login PDU first, or a login cut short."""
    c = Conn(connect(), 0)
    keys = [f"InitiatorName={INITIATOR}", f"TargetName={iqn}", "SessionType=Normal",
            "AuthMethod=None", rng.choice(["HeaderDigest=None", "HeaderDigest=CRC32C,None",
                                           "MaxRecvDataSegmentLength=512", "X=" + "y" * 300,
                                           "MaxBurstLength=0", "InitialR2T=Maybe"])]
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["seed", "keys", "other", "cut"])
        if kind == "seed":
            pdu = with_segment(rng, mutate(rng, rng.choice(login_headers)))
        elif kind == "keys":
            text = b"".join(k.encode() + b"\0" for k in keys)
            hdr = bytearray(48)
            hdr[0] = 0x43
            hdr[1] = rng.choice([0x81, 0x87, 0x83, 0x04, 0x8F, rng.randrange(256)])
            hdr[5:8] = len(text).to_bytes(3, "big")
            hdr[8:14] = b"\x80\x00\x00\x00\x00\x09"
            hdr[16:20] = rng.randrange(1 << 32).to_bytes(4, "big")
            pdu = mutate(rng, bytes(hdr)) if rng.random() < 0.3 else bytes(hdr)
            pdu = pdu[:48] + padded(text)
        elif kind == "other":
            pdu = with_segment(rng, mutate(rng, bhs(rng.choice(INITIATOR_OPCODES))))
        else:
            text = b"".join(k.encode() + b"\0" for k in keys)
            full = bytes([0x43, 0x87, 0, 0, 0]) + len(text).to_bytes(3, "big") + bytes(40)
            pdu = (full + padded(text))[:rng.randrange(1, 48 + len(text))]
        if not c.send(pdu, rng, split=rng.random() < 0.2):
            break
        if not c.drain(0.03):
            break
    c.close(rng)


# --- driving ----------------------------------------------------------------

def run_case(seed, n, iqn, headers, login_headers):
    """Case `n` of `seed`: the same bytes each time (the target's answers
    aside). Its name, with the variant a case reports after a slash."""
    rng = random.Random(f"{seed}:{n}")
    if rng.random() < 0.15:
        case_login(rng, iqn, login_headers)
        return "login"
    isid = b"\x80\x00\x00" + (n % (1 << 24)).to_bytes(3, "big")
    case = rng.choice(FFP_CASES)
    s, exp, _ = raw_full_feature(iqn, INITIATOR, isid, digests=case is case_digests)
    s.settimeout(5)
    c = Conn(s, exp)
    variant = case(rng, c, headers)
    c.drain(rng.choice([0.0, 0.02, 0.1]))
    c.close(rng)
    return case.__name__ + (f"/{variant}" if variant else "")


def still_served(iqn, deadline=30):
    """A fresh session logs in and gets TEST UNIT READY and NOP-Out
    answered, within `deadline` seconds."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            s, exp, _ = raw_full_feature(iqn, INITIATOR, b"\x80\x00\x00\xff\xff\xff")
            s.settimeout(10)
            try:
                for i in range(4):
                    s.sendall(scsi_cmd(0x100 + i, exp + i, bytes([0x00]), 0))
                    hdr, _ = recv_pdu(s)
                    if hdr[0] & 0x3F == 0x21 and hdr[3] == 0:
                        s.sendall(bhs(0x00, 0x80, itt=0x200, word20=0xFFFFFFFF,
                                      cmd_sn=exp + i + 1))
                        hdr, _ = recv_pdu(s)
                        return hdr[0] & 0x3F == 0x20
            finally:
                s.close()
        except (OSError, EOFError, AssertionError) as e:
            last = e
            time.sleep(0.5)
    raise AssertionError(f"the target no longer serves a new session: {last!r}")


def run(seed, cases, iqn, first=0, check_every=25, log=print):
    headers = seed_headers("pdu")
    login_headers = [h for h in headers if h[0] & 0x3F == 0x03] or [bhs(0x03)]
    assert headers, f"no seeds under {SEEDS}"
    counts = {}
    started = time.monotonic()
    for n in range(first, first + cases):
        try:
            name = run_case(seed, n, iqn, headers, login_headers)
        except (OSError, EOFError) as e:
            # The target may close at any point: that is an answer.
            name = f"closed ({type(e).__name__})"
        except AssertionError as e:
            raise AssertionError(f"seed {seed} case {n}: {e}") from e
        counts[name] = counts.get(name, 0) + 1
        if (n + 1 - first) % check_every == 0:
            assert still_served(iqn), f"seed {seed}: no NOP-In after case {n}"
    assert still_served(iqn), f"seed {seed}: no NOP-In after the last case"
    log(f"netfuzz: seed {seed}, cases {first}..{first + cases - 1} in "
        f"{time.monotonic() - started:.0f} s: " +
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--iqn", required=True, help="an enabled target with a LUN 0 of "
                   f"at least {BLOCKS} blocks")
    a = p.parse_args()
    run(a.seed, a.cases, a.iqn, a.first)


if __name__ == "__main__":
    sys.exit(main())
