# SPDX-License-Identifier: GPL-2.0
"""Reset storms: sg_reset sends device, target, bus and host resets, one
after another, while fio writes and verifies through the same disk, over
scst_local and over open-iscsi. The initiator retries what the resets
abort; no write is lost or torn (fio verifies every block), and nothing
oopses, hangs or leaks.

RESET_STORM (default 6) is the number of rounds of every kind of reset;
a longer storm is the same test with a larger count."""

import os
import signal
import subprocess
import time

from conftest import (backing_file, device_of, iscsi_export, local_disk, mgmt,
                      open_iscsi_login, unload_leak_free)

IQN = "iqn.2026-12.org.scst-rs:resets"

ROUNDS = int(os.environ.get("RESET_STORM", "6"))


def fio_verify(dev):
    """fio writing random 4 KiB blocks at QD16 and verifying each
    (crc32c), in the background; it runs until stopped."""
    return subprocess.Popen(["fio", "--name=storm", f"--filename={dev}", "--allow_file_create=0",
                             "--direct=1",
                             "--ioengine=libaio", "--iodepth=16", "--rw=randwrite", "--bs=4k",
                             "--size=16M", "--verify=crc32c", "--verify_fatal=1",
                             "--verify_backlog=256", "--time_based", "--runtime=3600",
                             "--randrepeat=0", "--output-format=terse"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def storm(sg, kinds, fio):
    """`ROUNDS` rounds of each reset in `kinds` on `sg` (no escalation)
    while fio runs; the count of resets that succeeded, per kind."""
    done = {kind: 0 for kind in kinds}
    for _ in range(ROUNDS):
        for kind in kinds:
            time.sleep(0.3)
            assert fio.poll() is None, "fio stopped: " + fio.communicate()[1]
            r = subprocess.run(["sg_reset", "-N", kind, sg], capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0 and "busy" in r.stderr.lower():
                # The initiator's SCSI layer was still recovering from
                # the last reset (EBUSY before any handler ran): once more.
                time.sleep(1)
                r = subprocess.run(["sg_reset", "-N", kind, sg], capture_output=True,
                                   text=True, timeout=300)
            if r.returncode == 0:
                done[kind] += 1
            else:
                print(f"sg_reset {kind}: {r.stdout}{r.stderr}")
    return done


def stop(fio):
    """Lets fio finish the writes it has in flight and verify them: it
    stops at SIGINT (its own Ctrl-C, after which it exits with 128) and
    reports what it found. Its terse output's fifth field is the job's
    error."""
    time.sleep(2)
    fio.send_signal(signal.SIGINT)
    out, err = fio.communicate(timeout=300)
    assert fio.returncode in (0, 128), out + err
    fields = out.strip().splitlines()[-1].split(";")
    assert fields[4] == "0" and "verify:" not in err, out + err
    return fields


def storm_under_fio(sd, sg):
    """Every kind of reset on `sg`, `ROUNDS` rounds, while fio writes and
    verifies through `sd`; the count of resets that succeeded, per kind."""
    fio = fio_verify(sd)
    started = time.monotonic()
    try:
        done = storm(sg, ["-d", "-t", "-b", "-H"], fio)
    finally:
        out = stop(fio)
    print(f"resets that succeeded in {time.monotonic() - started:.1f} s: {done};"
          f" fio wrote {out[46]} KiB and verified {out[5]} KiB")
    return done


def test_reset_storm_over_scst_local(scst):
    """Device (LUN RESET), target and bus (TARGET RESET) and host resets
    through scst_local's error handlers, under fio --verify."""
    path = backing_file("resets", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device storm0 filename={path}")
    done = storm_under_fio(*local_disk("storm0", "storm_t"))
    # scst_local has a handler for each: every one succeeds.
    assert all(n == ROUNDS for n in done.values()), done
    unload_leak_free()


def test_reset_storm_over_iscsi(scst):
    """Device resets (LUN RESET) and target resets (TARGET WARM RESET)
    from the kernel's iSCSI initiator, under fio --verify. iscsi_tcp has
    no bus or host reset handler: those fail at the initiator, and are
    sent all the same."""
    path = backing_file("resets", 16 << 20)
    mgmt("handlers/vdisk_fileio/mgmt", f"add_device storm1 filename={path}")
    with iscsi_export(IQN, "storm1"):
        with open_iscsi_login(IQN) as scsi_devices:
            sd = device_of(scsi_devices, "block/sd*")
            sg = device_of(scsi_devices, "scsi_generic/sg*")
            assert sd and sg, "no disk from the iSCSI login"
            done = storm_under_fio(sd, sg)
            assert done["-d"] == ROUNDS and done["-t"] == ROUNDS, done
    unload_leak_free()
