# SPDX-License-Identifier: GPL-2.0
"""COMPARE AND WRITE (the primitive VMware's ATS locking stands on): a
match writes, a miscompare names the first differing byte and writes
nothing, and initiators that increment one counter with read + COMPARE AND
WRITE never lose an increment."""

import os
import struct
import threading

import pytest

from conftest import backing_file, local_sessions, mgmt, sh, sg_io

BLOCK = 512
GOOD, CHECK_CONDITION = 0x00, 0x02


def read10(fd, lba, blocks=1):
    cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
    status, sense, data = sg_io(fd, cdb, data_in_len=blocks * BLOCK)
    assert status == GOOD, sense.hex()
    return data


def write10(fd, lba, data):
    cdb = struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // BLOCK, 0)
    status, sense, _ = sg_io(fd, cdb, data_out=data)
    assert status == GOOD, sense.hex()


def compare_and_write(fd, lba, expected, new):
    """(status, sense) of COMPARE AND WRITE of len(new) // BLOCK blocks."""
    cdb = struct.pack(">BBQ3xBBB", 0x89, 0, lba, len(new) // BLOCK, 0, 0)
    status, sense, _ = sg_io(fd, cdb, data_out=expected + new)
    return status, sense


def miscompare_offset(sense):
    """The INFORMATION field of MISCOMPARE DURING VERIFY OPERATION sense
    (fixed format)."""
    assert sense[0] & 0x7F == 0x70 and sense[0] & 0x80, sense.hex()
    assert sense[2] & 0x0F == 0x0E and sense[12:14] == b"\x1d\x00", sense.hex()
    return struct.unpack(">I", sense[3:7])[0]


@pytest.fixture
def two_nodes(scst):
    """A fileio LUN seen by two scst_local sessions: their sg nodes, open."""
    path = backing_file("caw", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device disk1 filename={path}")
    nodes = local_sessions("disk1", "t1", "nodeA", "nodeB")
    fds = [os.open(sg, os.O_RDWR) for _, sg in nodes]
    yield nodes, fds
    for fd in fds:
        os.close(fd)
    for s in ("nodeA", "nodeB"):
        mgmt("targets/scst_local/mgmt", f"del_session t1 {s}")


def test_match_writes_and_miscompare_does_not(two_nodes, tmp_path):
    nodes, (a, b) = two_nodes
    _, sg_a = nodes[0]
    old, new = b"\x11" * (2 * BLOCK), b"\x22" * (2 * BLOCK)
    write10(a, 6, old)
    # sg3_utils' tool: the file holds the data to compare, then the data
    # to write.
    buf = tmp_path / "caw.bin"
    buf.write_bytes(old + new)
    sh("sg_compare_and_write", f"--in={buf}", "--lba=6", "--num=2", sg_a)
    assert read10(b, 6, 2) == new

    # A miscompare at byte 700 of the compared data: nothing written, the
    # offset reported.
    wrong = bytearray(new)
    wrong[700] ^= 0xFF
    status, sense = compare_and_write(b, 6, bytes(wrong), b"\x33" * (2 * BLOCK))
    assert status == CHECK_CONDITION
    assert miscompare_offset(sense) == 700
    assert read10(a, 6, 2) == new
    r = sh("sg_compare_and_write", f"--in={buf}", "--lba=6", "--num=2", sg_a, check=False)
    assert r.returncode != 0 and "iscompare" in r.stdout + r.stderr, r

    # Zero blocks: nothing compared or written, GOOD.
    status, sense = compare_and_write(a, 6, b"", b"")
    assert status == GOOD, sense.hex()


def test_concurrent_increments_lose_nothing(two_nodes):
    """Six initiator threads, three per I_T nexus, each adding one to a
    counter 100 times by READ then COMPARE AND WRITE (retrying on a
    miscompare), while others write the blocks around it: the counter
    ends at 600. A COMPARE AND WRITE that let another command run between
    its compare and its write would let two increments of one value both
    succeed."""
    _, fds = two_nodes
    counter = 8
    write10(fds[0], counter, bytes(BLOCK))
    threads, per_thread, errors, retries = 6, 100, [], [0]
    stop = threading.Event()

    def increment(fd):
        try:
            done = 0
            while done < per_thread:
                old = read10(fd, counter)
                value = struct.unpack(">Q", old[:8])[0]
                new = struct.pack(">Q", value + 1) + old[8:]
                status, sense = compare_and_write(fd, counter, old, new)
                if status == GOOD:
                    done += 1
                else:
                    assert status == CHECK_CONDITION and miscompare_offset(sense) < 8, \
                        (status, sense.hex())
                    retries[0] += 1
        except Exception as e:  # reported by the main thread
            errors.append(e)

    def neighbour(fd):
        try:
            n = 0
            while not stop.is_set():
                write10(fd, counter + 1 + n % 4, bytes([n % 251]) * BLOCK)
                n += 1
        except Exception as e:
            errors.append(e)

    workers = [threading.Thread(target=increment, args=(fds[i % 2],)) for i in range(threads)]
    others = [threading.Thread(target=neighbour, args=(fd,)) for fd in fds]
    for t in workers + others:
        t.start()
    for t in workers:
        t.join(timeout=600)
    stop.set()
    for t in others:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in workers + others)
    final = struct.unpack(">Q", read10(fds[1], counter)[:8])[0]
    print(f"counter {final}, {retries[0]} miscompares retried")
    assert final == threads * per_thread
    assert retries[0] > 0, "the initiators never raced: the test proved nothing"
