# SPDX-License-Identifier: GPL-2.0
"""No lost writes: open-iscsi's disk takes random 4 KiB writes (FUA)
from several threads, each write's acknowledgment recorded; the target is torn
down in the middle (the module removed under the live session), loaded
again, and the same device configured on the same backing store. Every
acknowledged write then reads back, once through the target (the
initiator's session recovered) and once from the backing store itself.

The writer is this file's own rather than fio's verify state: fio 3.33
(Debian 12) decides which writes were in flight from a count of reads
done, and its verify-only pass reported zeros for a few writes of the
last queue depth (see Documentation/reliability.rst). Here each thread
owns its blocks (block % THREADS), writes them one at a time, and knows
exactly which of its writes the disk acknowledged. A write that failed
may or may not have reached the medium: its block may hold either it or
the last acknowledged write before it, nothing else."""

import hashlib
import mmap
import os
import random
import struct
import subprocess
import threading
import time

import pytest

from conftest import (backing_file, device_of, load, loaded, loop_device, mgmt,
                      open_iscsi_login, sh, unload, unload_leak_free)

IQN = "iqn.2026-12.org.scst-rs:crash"
BLOCK = 4096
SIZE = 32 << 20
THREADS = 8
# Seconds of writing before the target goes.
WRITING = 4
# open-iscsi fails the commands of a session that stays down this long
# (its default is two minutes).
REPLACEMENT_TIMEOUT = 5
# Teardowns per handler (tools/testing/faults runs more).
RUNS = int(os.environ.get("CRASH_RUNS", "1"))


def pattern(block, token):
    """The 4 KiB a write of `block` carries: where it belongs and which
    write it was, then bytes derived from both."""
    header = struct.pack(">QQQ", block, *token)
    body = header + hashlib.sha256(header).digest()
    return (body * (BLOCK // len(body) + 1))[:BLOCK]


class AckedWriter:
    """THREADS threads writing random blocks of `dev` with O_DIRECT until
    stopped or until a write fails, recording per block the last write
    the device acknowledged and a later one that failed."""

    def __init__(self, dev):
        self.dev = dev
        self.acked = {}
        self.failed = {}
        self.writes = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(THREADS)]
        for t in self.threads:
            t.start()

    def run(self, t):
        rng = random.Random(t)
        mine = range(t, SIZE // BLOCK, THREADS)
        buf = mmap.mmap(-1, BLOCK)
        # O_DSYNC: each write goes out with FUA, durable when acknowledged.
        fd = os.open(self.dev, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
        try:
            for n in range(1 << 30):
                if self.stopping.is_set():
                    break
                block = rng.choice(mine)
                buf[:] = pattern(block, (t, n))
                try:
                    os.pwrite(fd, buf, block * BLOCK)
                except OSError:
                    self.failed[block] = (t, n)
                    break
                self.acked[block] = (t, n)
                self.failed.pop(block, None)
                self.writes += 1
        finally:
            os.close(fd)
            buf.close()

    def join(self, seconds):
        """Waits for every thread to end (each after a failed write)."""
        deadline = time.monotonic() + seconds
        for t in self.threads:
            t.join(timeout=max(0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a write never ended"

    def check(self, dev):
        """Reads every block written on `dev`: the wrong ones, and how
        many were read."""
        wrong = []
        buf = mmap.mmap(-1, BLOCK)
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        try:
            for block in sorted(set(self.acked) | set(self.failed)):
                assert os.preadv(fd, [buf], block * BLOCK) == BLOCK
                allowed = [pattern(block, self.acked[block]) if block in self.acked
                           else bytes(BLOCK)]
                if block in self.failed:
                    allowed.append(pattern(block, self.failed[block]))
                if buf[:] not in allowed:
                    head = struct.unpack(">QQQ", buf[:24])
                    wrong.append((block, self.acked.get(block), self.failed.get(block), head))
        finally:
            os.close(fd)
            buf.close()
        return wrong, len(set(self.acked) | set(self.failed))


def configure(handler, backing):
    """Device crash0 on `backing`, LUN 0 of an enabled iSCSI target."""
    sh("ip", "link", "set", "lo", "up")
    mgmt(f"handlers/{handler}/mgmt", f"add_device crash0 filename={backing}")
    mgmt("targets/iscsi/mgmt", f"add_target {IQN}")
    mgmt(f"targets/iscsi/{IQN}/luns/mgmt", "add crash0 0")
    mgmt(f"targets/iscsi/{IQN}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")


def usable(dev, seconds=90):
    """Whether the disk reads again (its session recovered) within
    `seconds`."""
    for _ in range(seconds):
        r = subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=4k", "count=1",
                            "iflag=direct"], capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(1)
    return False


@pytest.fixture
def loopdev():
    with loop_device("crash-loop", SIZE) as dev:
        yield dev
        # The module holds the device open: out of the way before the detach.
        if loaded():
            unload()
    load()


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("handler", ["vdisk_fileio", "vdisk_blockio"])
def test_acknowledged_writes_survive_teardown(scst, handler, run, request):
    if handler == "vdisk_blockio":
        backing = request.getfixturevalue("loopdev")
    else:
        backing = backing_file("crash", SIZE)
    configure(handler, backing)
    settings = [("node.session.timeo.replacement_timeout", REPLACEMENT_TIMEOUT)]
    with open_iscsi_login(IQN, settings=settings) as scsi_devices:
        sd = device_of(scsi_devices, "block/sd*")
        assert sd, "no disk from the iSCSI login"
        writer = AckedWriter(sd)
        time.sleep(WRITING)
        assert writer.writes > 0 and not writer.failed, "writes failed before the teardown"
        # The target goes under the live session, with writes in flight.
        started = time.monotonic()
        unload()
        print(f"module removed under the writers in {time.monotonic() - started:.1f} s")
        writer.join(REPLACEMENT_TIMEOUT + 60)
        assert len(writer.failed) == THREADS, "writes went on with no target"
        # A fresh load: the same device on the same backing store.
        load()
        configure(handler, backing)
        assert usable(sd), "the initiator's session did not recover"
        wrong, through_target = writer.check(sd)
        assert not wrong, f"through the target: {wrong[:8]}"
        mgmt("targets/iscsi/enabled", "0")
    unload_leak_free()
    # The backing store itself, with no target in between (the module is
    # loaded again, with no device on it).
    wrong, from_backing = writer.check(backing)
    assert not wrong, f"on the backing store: {wrong[:8]}"
    print(f"{handler} run {run}: {writer.writes} writes acknowledged, {THREADS} failed;"
          f" {through_target} blocks read back through the target and from the backing store")
