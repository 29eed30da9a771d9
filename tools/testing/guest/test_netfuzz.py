# SPDX-License-Identifier: GPL-2.0
"""The network fuzzer (netfuzz.py) against the live target: a bounded,
seeded slice of it. The target must keep serving new sessions throughout,
end every fuzzed session, and unload; guest-run fails the run on any oops,
lockdep or hung-task report and on kmemleak's. Long runs:
tools/testing/netfuzz."""

import os
import time

import pytest

import netfuzz
from conftest import ROOT, backing_file, iscsi_export, mgmt

IQN = "iqn.2026-12.org.scst-rs:netfuzz"

# Bounded for CI (each case is a connection of its own); tools/testing/netfuzz
# sets others.
SEED = int(os.environ.get("NETFUZZ_SEED", "20261205"))
CASES = int(os.environ.get("NETFUZZ_CASES", "1000"))


@pytest.fixture
def target(scst):
    path = backing_file("netfuzz", netfuzz.BLOCKS * 512)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device fuzz0 filename={path}")
    with iscsi_export(IQN, "fuzz0"):
        # Digests are offered, so that case_digests can negotiate them.
        mgmt(f"targets/iscsi/{IQN}/HeaderDigest", "CRC32C,None")
        mgmt(f"targets/iscsi/{IQN}/DataDigest", "CRC32C,None")
        yield


def test_netfuzz(target):
    counts = netfuzz.run(SEED, CASES, IQN)
    # Every kind of case ran (the mix is part of what is tested).
    kinds = {f.__name__ for f in netfuzz.FFP_CASES} | {"login"}
    drawn = {name.split("/")[0] for name in counts}
    assert kinds <= drawn, f"cases never drawn: {kinds - drawn}"
    faults = {f"case_digests/{f}" for f in ["header", "data", "missing", "mutated"]}
    assert faults <= set(counts), f"digest faults never drawn: {faults - set(counts)}"
    # Every fuzzed session ends once its connection is gone.
    sessions = os.path.join(ROOT, "targets/iscsi", IQN, "sessions")
    for _ in range(100):
        if not os.listdir(sessions):
            break
        time.sleep(0.2)
    assert os.listdir(sessions) == [], f"sessions left: {os.listdir(sessions)}"
