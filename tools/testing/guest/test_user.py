# SPDX-License-Identifier: GPL-2.0
"""scst_user end to end: the reference file handler (tools/scst_user) serves
a disk through /dev/scst_user to Linux's SCSI stack via scst_local; the
kernel stays master when the handler dies or replies with garbage."""

import hashlib
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (FILEIO, HELD_BLOCK, ROOT, SCST_USER_SKIPS, SG_IO_LIMITED,
                      SKIPS_NEEDING_CONFIG, abort_received, backing_file, device_of, devices,
                      dmesg_since, held_block_backing, held_commands, host_of, iscsi_export,
                      iscsi_test_cu, mark_dmesg, mgmt, open_iscsi_login, read, read_block, sh,
                      write)

KERNEL_TROUBLE = ("BUG:", "Oops", "WARNING:", "hung_task", "blocked for more than",
                  "general protection", "kernel BUG")


def export(dev, target, session="s1"):
    mgmt("targets/scst_local/mgmt", f"add_target {target}")
    mgmt(f"targets/scst_local/{target}/luns/mgmt", f"add {dev} 0")
    mgmt("targets/scst_local/mgmt", f"add_session {target} {session}")
    return devices(host_of(target, session))


def fio_verify(disk, *job):
    """fio random writes to `disk`, read back and checked (crc32c)."""
    r = subprocess.run(["fio", "--name=t", f"--filename={disk}", "--allow_file_create=0",
                        "--direct=1",
                        "--ioengine=libaio", "--iodepth=32", *job, "--rw=randwrite",
                        "--randrepeat=0", "--verify=crc32c", "--verify_fatal=1",
                        "--do_verify=1", "--output-format=terse"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr


def round_trip(disk, data, bs, skip):
    """Writes `data` to `disk` at block `skip` of `bs` bytes (O_DIRECT) and
    returns what reads back from there."""
    src = "/tmp/round-trip.src"
    with open(src, "wb") as f:
        f.write(data)
    sh("dd", f"if={src}", f"of={disk}", "conv=nocreat", f"bs={bs}", "oflag=direct", f"seek={skip}")
    return subprocess.run(["dd", f"if={disk}", f"bs={bs}", "iflag=direct", f"skip={skip}",
                           f"count={len(data) // bs}", "status=none"],
                          capture_output=True, timeout=120).stdout


def no_kernel_trouble(marker):
    log = dmesg_since(marker)
    bad = [line for line in log.splitlines() if any(k in line for k in KERNEL_TROUBLE)]
    assert not bad, "\n".join(bad)


def test_register_and_unregister(handlers):
    path = backing_file("u1", 16 << 20)
    h = handlers("udisk", path)
    assert os.path.islink(os.path.join(ROOT, "handlers/udisk/udisk"))
    assert read("devices/udisk/type").startswith("0 - Direct-access")
    assert read("handlers/udisk/type").startswith("0 - ")
    assert read("devices/udisk/timeout").strip() == "60"
    # The same name twice is refused; the first device keeps serving.
    dup = subprocess.run([FILEIO, "udisk", path], capture_output=True, text=True, timeout=30)
    assert dup.returncode == 1 and "File exists" in dup.stderr, dup.stderr
    # Devices of a user handler are not made through mgmt.
    assert write("handlers/udisk/mgmt", "add_device other filename=/dev/null") == 22
    assert "/dev/scst_user" in read("last_sysfs_mgmt_res")
    h.kill()
    assert not os.path.exists(os.path.join(ROOT, "handlers/udisk"))
    assert not os.path.exists(os.path.join(ROOT, "devices/udisk"))


def test_round_trip_and_inquiry(handlers):
    path = backing_file("u2", 16 << 20)
    h = handlers("udisk", path)
    # ATTACH_SESS reports how many commands the core executes at once.
    mgmt("devices/udisk/threads_num", "5")
    sd, sg = export("udisk", "t1")
    inq = sh("sg_inq", sg).stdout
    assert "SCST_RS" in inq and "USER DISK" in inq, inq
    cap = sh("sg_readcap", sg).stdout
    assert "Last LBA=32767" in cap and "512 bytes" in cap, cap
    data = os.urandom(4 << 20)
    out = round_trip(sd, data, 65536, 3)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    # The handler wrote the file itself.
    with open(path, "rb") as f:
        f.seek(3 * 65536)
        assert f.read(len(data)) == data
    log = h.kill()
    assert re.search(r"^session attached: 0x[0-9a-f]+ LUN 0 threads_num 5$", log, re.M), log


@pytest.mark.parametrize("mode", [[], ["--on-free-call", "--no-reuse"]])
def test_fio_verify(handlers, mode):
    path = backing_file("u3", 32 << 20)
    handlers("udisk", path, *mode)
    sd, _ = export("udisk", "t1")
    fio_verify(sd, "--bs=4k", "--size=16M")
    # scst_local's buffer is the initiator's own pages: every data command
    # is copied to and from the handler's buffer.
    assert int(read("devices/udisk/copied_commands")) > 0
    assert int(read("devices/udisk/zero_copy_commands")) == 0


def block_io_count(sd):
    """Reads plus writes the block layer completed on /dev/sdX."""
    fields = read(f"/sys/block/{os.path.basename(sd)}/stat").split()
    return int(fields[0]) + int(fields[4])


@pytest.mark.parametrize("mode", [[], ["--on-free-call", "--no-reuse"], ["--parse", "call"]])
def test_zero_copy_over_iscsi(handlers, mode):
    """Through the iSCSI target a command's data moves in the handler's own
    pinned buffer: data-out lands in it from the socket, data-in leaves from
    it, and nothing is copied in between (the device's zero_copy_commands
    counts such commands, copied_commands the others). fio verify checks
    the bytes, in sizes that take immediate data, R2Ts and many Data-In
    PDUs, with buffers the kernel caches and buffers it gives back, and with
    PARSE before each command (then the receive loop, which never waits for
    the handler, stages a write's data-out in pages of its own, copied once
    into the handler's buffer when it is lent on a core worker)."""
    iqn = "iqn.2026-11.org.scst-rs:user-zero-copy"
    path = backing_file("uzc", 64 << 20)
    h = handlers("udisk", path, *mode)
    with iscsi_export(iqn, "udisk"), open_iscsi_login(iqn) as scsi_devices:
        sd = device_of(scsi_devices, "block/sd*")
        assert sd, "no disk after login"
        sh("udevadm", "settle", check=False)
        ios = block_io_count(sd)
        lent = int(read("devices/udisk/zero_copy_commands"))
        fio_verify(sd, "--bssplit=4k/40:64k/30:512k/30", "--size=24M")
        ios = block_io_count(sd) - ios
        lent = int(read("devices/udisk/zero_copy_commands")) - lent
        print(f"{ios} reads and writes, {lent} commands in the handler's buffers")
        assert ios > 100
        assert lent >= ios
        assert int(read("devices/udisk/copied_commands")) == 0
    if "--parse" in mode:
        log = h.kill()
        assert re.search(r"^parse: opcode 0x2a, initiator \d+ bytes", log, re.M), log[-2000:]
        assert re.search(r"^parse: opcode 0x28, initiator \d+ bytes", log, re.M), log[-2000:]


@pytest.mark.parametrize("mode", ["call", "exception"])
def test_parse(handlers, mode):
    """With parse_type CALL every command reaches the handler as PARSE first,
    and EXEC gets the buffer PARSE sized: a READ(10) of one block moves 512
    bytes however much the initiator asked for. With EXCEPTION only the
    opcodes no standard parser knows (vendor-specific) do. A status in the
    PARSE reply ends the command there, without EXEC."""
    path = backing_file("upa", 16 << 20)
    h = handlers("udisk", path, "--parse", mode)
    sd, sg = export("udisk", "t1")
    data = os.urandom(64 << 10)
    assert round_trip(sd, data, 4096, 8) == data
    # READ(10) of LBA 64 (where the data starts), one block, into a 4 KiB
    # buffer.
    one = sh("sg_raw", "-r", "4096", "-o", "/tmp/upa.one", sg,
             "28", "00", "00", "00", "00", "40", "00", "00", "01", "00")
    with open("/tmp/upa.one", "rb") as f:
        assert f.read()[:512] == data[:512]
    vendor = sh("sg_raw", sg, "c1", "00", "00", "00", "00", "00", check=False)
    said = vendor.stdout + vendor.stderr
    assert vendor.returncode != 0 and "invalid command operation code" in said.lower(), said
    log = h.kill()
    print(one.stdout + one.stderr)
    if mode == "call":
        assert "parse: opcode 0x28, initiator 4096 bytes, handler 512 (2)" in log, log
        assert "exec: opcode 0x28, buffer 512 bytes" in log, log
        assert "parse: opcode 0x2a, initiator 4096 bytes, handler 4096 (1)" in log, log
    else:
        assert "parse: opcode 0x28" not in log and "parse: opcode 0x2a" not in log, log
        assert "exec: opcode 0x28, buffer 4096 bytes" in log, log
    assert "parse: opcode 0xc1 ends with status 0x02" in log, log
    assert "exec: opcode 0xc1" not in log, log


def test_kill_during_fio_then_serve_again(handlers):
    marker = f"scst-test: kill {time.time()}"
    mark_dmesg(marker)
    path = backing_file("u4", 32 << 20)
    h = handlers("udisk", path)
    sd, _ = export("udisk", "t1")
    fio = subprocess.Popen(["fio", "--name=t", f"--filename={sd}", "--allow_file_create=0",
                            "--direct=1",
                            "--ioengine=libaio", "--iodepth=16", "--bs=4k", "--size=16M",
                            "--rw=randrw", "--time_based", "--runtime=120",
                            "--output-format=terse"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    assert fio.poll() is None, fio.communicate()
    h.kill()
    out, err = fio.communicate(timeout=120)
    assert fio.returncode != 0, "fio saw no I/O error when its device's handler died"
    assert not os.path.exists(os.path.join(ROOT, "devices/udisk"))
    assert read("targets/scst_local/t1/luns/mgmt")  # the target stands
    # A new process registers the same name and serves again.
    handlers("udisk", path)
    sd2, _ = export("udisk", "t2", "s2")
    out = subprocess.run(["dd", f"if={sd2}", "bs=4k", "iflag=direct", "count=256",
                          "status=none"], capture_output=True, timeout=120)
    assert out.returncode == 0 and len(out.stdout) == 256 * 4096
    no_kernel_trouble(marker)


def test_abort_reaches_the_handler(handlers):
    """A command the handler holds times out at the initiator; the SCSI error
    handler's ABORT TASK reaches the handler as TASK_MGMT_RECEIVED naming
    that command, the handler ends it, the abort succeeds and the retried
    READ returns the data; TASK_MGMT_DONE follows. Without the notification
    the command would end only at the handler's 60 s timeout."""
    marker = f"scst-test: abort {time.time()}"
    mark_dmesg(marker)
    lba = 5000
    path = held_block_backing("uab", lba)
    h = handlers("udisk", path, "-t", "2", "--hold-lba", str(lba))
    sd, _ = export("udisk", "t1")
    write(f"/sys/block/{os.path.basename(sd)}/device/timeout", "5")
    start = time.monotonic()
    r = read_block(sd, lba)
    elapsed = time.monotonic() - start
    print(f"the held READ returned after {elapsed:.1f} s")
    assert r.returncode == 0, r.stderr
    assert r.stdout == HELD_BLOCK
    assert elapsed < 55, "the command ended only at the handler's timeout"
    log = h.kill()
    print(log)
    held = held_commands(log)
    assert len(held) == 1, log
    # ABORT TASK names the held command.
    assert abort_received(log, held[0]), log
    assert f"replied to held command {held[0]}" in log, log
    assert "task management done: fn 0 " in log, log
    no_kernel_trouble(marker)


def test_host_reset_waits_for_a_held_command(handlers):
    """Host reset is the SCSI error handler's last step: after it the
    midlayer finishes and reuses every command of the host, so scst_local
    must not answer it while one still executes (the backend would write
    into a reused command). The handler holds a READ and ignores the reset:
    the core's own wait gives up after 30 s, yet the reset returns only once
    the handler's timeout (40 s) has failed the command."""
    marker = f"scst-test: host reset {time.time()}"
    mark_dmesg(marker)
    path = backing_file("uhr", 16 << 20)
    lba = 6000
    h = handlers("udisk", path, "-t", "2", "--hold-lba", str(lba))
    mgmt("devices/udisk/timeout", "40")
    sd, sg = export("udisk", "t1")
    # The midlayer's own timeout must not start error handling first.
    write(f"/sys/block/{os.path.basename(sd)}/device/timeout", "300")
    start = time.monotonic()
    dd = subprocess.Popen(["dd", f"if={sd}", "bs=512", f"skip={lba}", "count=1",
                           "iflag=direct", "status=none"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):
        if any(line.startswith("holding command") for line in h.lines):
            break
        time.sleep(0.1)
    assert any(line.startswith("holding command") for line in h.lines), "".join(h.lines)
    reset = subprocess.run(["sg_reset", "--no-esc", "--host", sg], capture_output=True,
                           text=True, timeout=300)
    elapsed = time.monotonic() - start
    dd.communicate(timeout=60)
    print(f"host reset returned after {elapsed:.1f} s; dd ended with {dd.returncode}")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    log = dmesg_since(marker)
    # The session's own target reset gave up on the held command ...
    assert re.search(r"scst_local: HostReset .*: failed", log), log
    # ... and the host reset waited for the handler's timeout all the same.
    assert elapsed >= 38, elapsed
    no_kernel_trouble(marker)


@pytest.mark.parametrize("garbage", ["handle", "subcode", "status", "length"])
def test_malformed_replies_fail_commands(handlers, garbage):
    marker = f"scst-test: garbage {garbage} {time.time()}"
    mark_dmesg(marker)
    path = backing_file("u5", 8 << 20)
    h = handlers("udisk", path, "--garbage", garbage)
    # Replies that never match wait out the timeout.
    mgmt("devices/udisk/timeout", "3")
    sd, _ = export("udisk", "t1")
    r = subprocess.run(["dd", f"if={sd}", "bs=4k", "iflag=direct", "count=1", "skip=7",
                        "status=none"], capture_output=True, timeout=300)
    assert r.returncode != 0, "a read with a malformed reply succeeded"
    # Writes (whose replies are sound) still work: the device lives on.
    w = subprocess.run(["dd", "if=/dev/zero", f"of={sd}", "conv=nocreat",
                        "bs=4k", "oflag=direct", "count=1",
                        "seek=9", "status=none"], capture_output=True, timeout=300)
    assert w.returncode == 0, w.stderr
    log = dmesg_since(marker)
    assert "udisk" in log and ("reply" in log), log
    h.kill()
    no_kernel_trouble(marker)


def test_one_syscall_per_command(handlers):
    path = backing_file("u6", 16 << 20)
    h = handlers("udisk", path, "-t", "1")
    sd, _ = export("udisk", "t1")
    # Warm the buffer cache of the kernel: the first commands allocate.
    sh("dd", f"if={sd}", "of=/dev/null", "bs=4k", "iflag=direct", "count=16")
    n = 2000
    trace = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=ioctl", "-o", "/tmp/u6.strace",
                              "-p", str(h.proc.pid)], stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    sh("dd", f"if={sd}", "of=/dev/null", "bs=4k", "iflag=direct", f"count={n}")
    time.sleep(1)
    trace.send_signal(signal.SIGINT)
    trace.wait(timeout=60)
    with open("/tmp/u6.strace") as f:
        summary = f.read()
    calls = [int(line.split()[3]) for line in summary.splitlines()
             if line.strip().endswith("ioctl") and len(line.split()) >= 5]
    assert calls, summary
    print(f"{n} READ commands, {calls[0]} ioctl calls by the handler:\n{summary}")
    # One ioctl per command, plus the few that strace's attach interrupted.
    assert n <= calls[0] <= n + 20, summary


def test_iscsi_test_cu_local(handlers):
    """The file handler's LUN through scst_local passes the SCSI suites that
    vdisk_fileio passes (tools/testing/iscsi-test-cu-local)."""
    path = backing_file("ucu", 256 << 20)
    handlers("udisk", path)
    _, sg = export("udisk", "t1")
    failed, _ = iscsi_test_cu(sg, "iscsi-test-cu-scst_user-local.txt",
                              allowed_skips=SKIPS_NEEDING_CONFIG | SCST_USER_SKIPS)
    unexpected = failed - set(SG_IO_LIMITED)
    assert not unexpected, f"iscsi-test-cu failures: {sorted(unexpected)}"


def test_iscsi_test_cu_over_iscsi(handlers):
    """The same SCSI suites on the file handler's LUN through the iSCSI
    target (libiscsi's initiator over loopback)."""
    iqn = "iqn.2026-11.org.scst-rs:user"
    path = backing_file("ucu-iscsi", 256 << 20)
    handlers("udisk", path)
    with iscsi_export(iqn, "udisk"):
        failed, _ = iscsi_test_cu(f"iscsi://127.0.0.1/{iqn}/0",
                                  "iscsi-test-cu-scst_user-iscsi.txt",
                                  allowed_skips=SKIPS_NEEDING_CONFIG | SCST_USER_SKIPS)
    assert not failed, f"iscsi-test-cu failures: {sorted(failed)}"
