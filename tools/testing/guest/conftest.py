# SPDX-License-Identifier: GPL-2.0
"""Fixtures for the guest tests: they run as root inside the test guest
(tools/testing/guest-run) and drive a freshly built scst.ko."""

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import mmap
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE = os.path.join(REPO, "scst.ko")
ROOT = "/sys/kernel/scst_tgt"
KMEMLEAK = "/sys/kernel/debug/kmemleak"


# Seconds spent in each test file (set-up, call and teardown of its tests),
# printed at the end of the run so that slow files show.
FILE_SECONDS = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    FILE_SECONDS[path] = FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    terminalreporter.section("seconds per test file")
    for path, seconds in sorted(FILE_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
    st = os.statvfs("/tmp")
    terminalreporter.write_line(f"/tmp: {st.f_bfree * st.f_frsize >> 20} MiB of "
                                f"{st.f_blocks * st.f_frsize >> 20} MiB free at the end")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def loaded():
    with open("/proc/modules") as f:
        return any(line.split()[0] == "scst" for line in f)


def load():
    sh("insmod", MODULE)


def unload():
    # udev may still be probing a disk the test created (an open /dev/sdX
    # holds the module), or about to: the SCSI layer emits its uevents
    # for the unit attentions a test took from its own event thread. Let
    # it finish, a few times over (bounded), as the init script does.
    for _ in range(10):
        sh("udevadm", "settle", check=False)
        if sh("rmmod", "scst", check=False).returncode == 0:
            return
        time.sleep(0.5)
    sh("rmmod", "scst")


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def write(path, text):
    """Writes `text` (str or bytes) to a sysfs file in one write(2), as
    `echo` does; returns 0 or the errno."""
    data = text if isinstance(text, bytes) else text.encode()
    fd = os.open(os.path.join(ROOT, path), os.O_WRONLY)
    try:
        os.write(fd, data)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def mgmt(path, line):
    """Writes a mgmt line that must succeed."""
    rc = write(path, line)
    assert rc == 0, f"{path}: {line!r}: errno {rc}: {read('last_sysfs_mgmt_res')}"


def backing_file(name, size):
    """A sparse backing file of `size` bytes under /tmp, new each time."""
    path = f"/tmp/{name}.img"
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@contextlib.contextmanager
def loop_device(name, size):
    """A loop device over a new sparse backing file of `size` bytes,
    detached afterwards."""
    dev = sh("losetup", "--find", "--show", backing_file(name, size)).stdout.strip()
    try:
        yield dev
    finally:
        sh("losetup", "-d", dev, check=False)


def kmemleak_report():
    """Scans for leaks and returns the report (objects older than 5 s)."""
    time.sleep(6)
    with open(KMEMLEAK, "w") as f:
        f.write("scan")
    with open(KMEMLEAK, "w") as f:
        f.write("scan")
    with open(KMEMLEAK) as f:
        return f.read()


def dmesg_since(marker):
    out = sh("dmesg").stdout
    return out[out.rfind(marker):] if marker in out else out


def mark_dmesg(text):
    with open("/dev/kmsg", "w") as f:
        f.write(text + "\n")


# The guest's /tmp is an overlay on a RAM file system of half the guest's
# memory (about 1 GB): the backing files, patterns and trees each test
# leaves there would, over the whole suite, fill it and fail whatever test
# comes next with ENOSPC (a sanitize pass, a fio job, a handler's file).
@pytest.fixture(autouse=True)
def tmp_left_clean():
    """Removes what the test created at the top of /tmp, once its other
    fixtures are torn down (an autouse fixture is finalized last)."""
    before = set(os.listdir("/tmp"))
    yield
    if os.path.realpath(SCRATCH) == "/tmp":
        return
    for name in set(os.listdir("/tmp")) - before:
        if name.startswith("pytest-of-"):
            # pytest's own tmp_path root, which it cleans at exit.
            continue
        path = os.path.join("/tmp", name)
        if os.path.isdir(path) and not os.path.islink(path):
            # (Not asked of files: an overlay's files report the upper
            # layer's device, so ismount takes every one for a mount.)
            if not os.path.ismount(path):
                shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _files_in_dev():
    """Regular files in /dev and /dev/mapper, where only device nodes,
    directories and links belong."""
    found = set()
    for directory in ("/dev", "/dev/mapper"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if entry.is_file(follow_symlinks=False):
                    found.add(entry.path)
    return found


# A writer that opens a disk's path just after the disk went away (dd, fio,
# open(..., "w")) creates a regular file in devtmpfs under the disk's name.
# The file outlives the test and hides the next disk of that name: devtmpfs
# cannot make its node, and a later test writes to the file, not the disk,
# and sees its writes "succeed" past a reservation or a table load fail.
# Writers to disks pass conv=nocreat or --allow_file_create=0; this names
# any test that still leaves such a file, and removes it.
@pytest.fixture(autouse=True)
def dev_left_clean():
    before = _files_in_dev()
    yield
    left = _files_in_dev() - before
    for path in left:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    assert not left, f"the test left regular files in /dev: {sorted(left)}"


@pytest.fixture
def scst():
    """scst.ko loaded for one test and unloaded after it."""
    assert os.environ.get("SCST_IN_GUEST") == "1", "guest tests run under tools/testing/guest-run"
    assert os.path.exists(MODULE), "build scst.ko first (make)"
    if loaded():
        unload()
    load()
    yield ROOT
    unload()
    assert not os.path.exists(ROOT)


__all__ = ["errno"]


# Tests of tools/testing/iscsi-test-cu-local's suites that skip themselves
# on the LUN the runs give them (a thin fileio LUN), and what they would
# need. The tables count them as not passed; the runs accept these skips
# and no other. test_iscsi.py's test_iscsi_test_cu_on_configured_luns runs
# each of them on a LUN that has what it needs, where none may skip.
_REMOVABLE = "a removable LUN (PREVENT ALLOW and START STOP UNIT's eject and load)"
SANITIZE_TESTS = ("BlockErase", "BlockEraseReserved", "CryptoErase", "CryptoEraseReserved",
                  "ExitFailureMode", "InvalidServiceAction", "Overwrite", "OverwriteReserved",
                  "Readonly", "Reservations", "Reset")
SKIPS_NEEDING_CONFIG = {
    **{f"SCSI.PreventAllow.{t}": _REMOVABLE
       for t in ("Simple", "Eject", "ITNexusLoss", "Logout", "WarmReset", "ColdReset",
                 "LUNReset", "2ITNexuses")},
    "SCSI.StartStopUnit.Simple": _REMOVABLE,
    "SCSI.ReadOnly.ReadOnlySBC": "a read-only LUN",
    **{f"SCSI.WriteAtomic16.{t}": "a blockio LUN on a block device that writes atomically"
       for t in ("Simple", "BeyondEol", "ZeroBlocks", "WriteProtect", "DpoFua", "VPD")},
    **{f"SCSI.Sanitize.{t}": "--allow-sanitize (it erases the LUN; Reset: a LUN whose "
       "sanitize lasts past a reconnection)" for t in SANITIZE_TESTS},
}

# What is not offered by design, so that a test (or the part of one) that
# needs it skips itself, with the "[SKIPPED]" line that says so.
_NO_CRYPTO = ("CRYPTOGRAPHIC ERASE: vdisk keeps data unencrypted, so there is no key to "
              "change; it is refused precisely (INVALID FIELD IN CDB, and absent from REPORT "
              "SUPPORTED OPERATION CODES), which libiscsi logs as a skip")
NOT_OFFERED = {
    name: ("SANITIZE CRYPTO_ERASE is not implemented", _NO_CRYPTO)
    for name in ("SCSI.Sanitize.CryptoErase", "SCSI.Sanitize.Readonly",
                 "SCSI.Sanitize.Reservations")
}

# What skips itself over SG_IO (scst_local): it makes iSCSI PDUs of its own.
NEEDS_ISCSI = {
    "SCSI.CompareAndWrite.InvalidDataOutSize":
        "rewrites the iSCSI PDU's data length (CHECK_FOR_ISCSI); runs over iSCSI",
}

# What the LUN of tools/scst_user's reference file handler skips beyond
# those: the commands it leaves out (it is a minimal example of the ABI, not
# a second vdisk), and the core's copy manager, which takes vdisk devices.
_NOT_IN_HANDLER = "the reference handler does not implement it"
_NO_DPO_FUA = "the reference handler reports no DPO/FUA support (DPOFUA 0)"
SCST_USER_SKIPS = {
    **{f"SCSI.{suite}.{test}": reason for suite, tests, reason in (
        ("ExtendedCopy", "Simple ParamHdr DescrLimits DescrType ValidTgtDescr ValidSegDescr",
         "the core's copy manager takes vdisk devices only"),
        ("ReceiveCopyResults", "CopyStatus OpParams",
         "the core's copy manager takes vdisk devices only"),
        ("Inquiry", "BlockLimits", "the reference handler's Block Limits page is all zero"),
        ("ReportSupportedOpcodes", "Simple OneCommand RCTD SERVACTV", _NOT_IN_HANDLER),
        ("GetLBAStatus", "Simple BeyondEol UnmapSingle", _NOT_IN_HANDLER),
        ("Unmap", "Simple VPD ZeroBlocks", _NOT_IN_HANDLER),
        ("WriteSame10", "Simple BeyondEol ZeroBlocks WriteProtect Unmap UnmapUntilEnd UnmapVPD "
         "Check UnmapUnaligned InvalidDataOutSize", _NOT_IN_HANDLER),
        ("WriteSame16", "Simple BeyondEol ZeroBlocks WriteProtect Unmap UnmapUntilEnd UnmapVPD "
         "Check UnmapUnaligned InvalidDataOutSize", _NOT_IN_HANDLER),
        ("WriteVerify10", "Simple BeyondEol ZeroBlocks WriteProtect Flags Dpo", _NOT_IN_HANDLER),
        ("WriteVerify12", "Simple BeyondEol ZeroBlocks WriteProtect Flags Dpo", _NOT_IN_HANDLER),
        ("WriteVerify16", "Simple BeyondEol ZeroBlocks WriteProtect Flags Dpo", _NOT_IN_HANDLER),
        ("CompareAndWrite", "Simple DpoFua Miscompare Unwritten InvalidDataOutSize",
         _NOT_IN_HANDLER),
        ("OrWrite", "Simple BeyondEol ZeroBlocks Protect DpoFua Verify", _NOT_IN_HANDLER),
        ("Prefetch10", "Simple BeyondEol ZeroBlocks Flags", _NOT_IN_HANDLER),
        ("Prefetch16", "Simple BeyondEol ZeroBlocks Flags", _NOT_IN_HANDLER),
        ("Read10", "DpoFua", _NO_DPO_FUA), ("Read12", "DpoFua", _NO_DPO_FUA),
        ("Read16", "DpoFua", _NO_DPO_FUA), ("Write10", "DpoFua", _NO_DPO_FUA),
        ("Write12", "DpoFua", _NO_DPO_FUA), ("Write16", "DpoFua", _NO_DPO_FUA),
        ("Verify10", "Dpo", _NO_DPO_FUA), ("Verify12", "Dpo", _NO_DPO_FUA),
        ("Verify16", "Dpo", _NO_DPO_FUA),
    ) for test in tests.split()},
}


# Where a run keeps its tables and logs (the results directory).
SCRATCH = os.environ.get("SCST_SCRATCH", "/tmp")


# Tests whose expectation contradicts the standard in a configuration the
# default runs use, with the standard's text. The tables count them as
# failed; the runs accept these failures and no other.
# test_iscsi_test_cu_on_configured_luns runs UnmapSingle where it is
# right; OneCommand is wrong wherever WRITE SAME (32) is supported.
LIBISCSI_WRONG = {
    "SCSI.GetLBAStatus.UnmapSingle":
        "with several logical blocks per physical block (LBPPB 8, the default "
        "lb_per_pb_exp on 512-byte blocks), it asks GET LBA STATUS from LBA i+1 and "
        "expects the first descriptor to start at LBA i+LBPPB; SBC-4 (LBA status "
        "descriptor relationships): the first descriptor's LBA STATUS LOGICAL BLOCK "
        "ADDRESS shall contain the value of the CDB's STARTING LOGICAL BLOCK ADDRESS",
    "SCSI.ReportSupportedOpcodes.OneCommand":
        "libiscsi 1.19 keeps 16 bytes of CDB usage data and leaves them zero for a longer "
        "CDB, so WRITE SAME (32)'s usage map reads as operation code 00h; SPC-4 (REPORT "
        "SUPPORTED OPERATION CODES, one_command parameter data): CDB SIZE, then the CDB "
        "USAGE DATA of that size, 32 bytes for a variable-length CDB of 32",
}


def libiscsi_table(target, table, *extra, suites=None):
    """Runs libiscsi's suites (tools/testing/iscsi-test-cu-local: every one
    scst-rs implements, or `suites`, a space-separated slice, and `extra`)
    on `target` (/dev/sgN or an iscsi:// URL), keeping the table as `table`
    in the scratch directory; {test: verdict}."""
    path = os.path.join(SCRATCH, table)
    env = dict(os.environ)
    if suites:
        env["LIBISCSI_SUITES"] = suites
    r = subprocess.run([os.path.join(REPO, "tools/testing/iscsi-test-cu-local"), target, path,
                        *extra], capture_output=True, text=True, timeout=3000, env=env)
    print(table, r.stdout)
    return read_libiscsi_table(path)


def read_libiscsi_table(path):
    """{test: verdict} of a table iscsi-test-cu-local wrote."""
    with open(path) as f:
        return dict(line.split()[:2] for line in f if line.strip())


def not_passed(verdicts, allowed_skips=SKIPS_NEEDING_CONFIG):
    """The tests of {test: verdict} that did not pass: a test that skipped
    itself did not, unless `allowed_skips` names it; one LIBISCSI_WRONG
    names failed as it must."""
    return {name for name, verdict in verdicts.items()
            if verdict != "passed" and not (verdict == "skipped" and name in allowed_skips)
            and not (verdict == "FAILED" and name in LIBISCSI_WRONG)}


def iscsi_test_cu(target, table, *extra, allowed_skips=SKIPS_NEEDING_CONFIG):
    """Every suite of libiscsi_table on `target`: the names of the tests
    that did not pass (see not_passed), and every (name, verdict)."""
    verdicts = libiscsi_table(target, table, *extra)
    assert len(verdicts) > 100, "too few tests ran"
    return not_passed(verdicts, allowed_skips), list(verdicts.items())


def side_by_side(table, title, note, tables):
    """Writes per-test tables ({label: {test: verdict}}) side by side as
    markdown `table` in the scratch directory, each with its count of
    passes, and prints it."""
    path = os.path.join(SCRATCH, table)
    names = sorted(set().union(*tables.values()))
    with open(path, "w") as f:
        f.write(f"# {title}\n\n{note}\n\n")
        for label, verdicts in tables.items():
            passed = sum(1 for v in verdicts.values() if v == "passed")
            f.write(f"- {label}: {passed} passed of {len(verdicts)}\n")
        f.write("\n| test | " + " | ".join(tables) + " |\n|---|" + "---|" * len(tables) + "\n")
        for name in names:
            f.write(f"| {name} | " + " | ".join(t.get(name, "-") for t in tables.values()) +
                    " |\n")
    with open(path) as f:
        print(f.read())


def libiscsi_test(target, test):
    """Runs one libiscsi test (`SCSI.Suite.Test`) on `target`; whether it
    passed without skipping itself (a target that lacks the command makes
    libiscsi log [SKIPPED] and count a pass), and its output."""
    r = sh("timeout", "120", "iscsi-test-cu", "--dataloss", f"--test={test}", target, check=False)
    out = r.stdout + r.stderr
    # The test's own log (an expected refusal) may come between its name
    # and its verdict; CUnit counts failed asserts in the summary.
    part = out[out.find(f"Test: {test.rsplit('.', 1)[1]}"):]
    ok = (re.search(r"(\.\.\.|^)\s*passed\s*$", part, re.M) is not None
          and "[SKIPPED]" not in part
          and re.search(r"asserts\s+\d+\s+\d+\s+\d+\s+0\s", out) is not None)
    return ok, out


def libiscsi_suite(target, suite, timeout=600, second_path=None, allow_sanitize=False,
                   skipped=None):
    """Runs the libiscsi suite `suite` (`SCSI.Suite`, or one test of it,
    `SCSI.Suite.Test`) on `target` with two initiator names (and
    `second_path`, another URL of the same LUN, for the MultipathIO
    suite; `allow_sanitize` for the Sanitize suite); {`SCSI.Suite.Test`:
    whether it passed without skipping itself}. `skipped`, a dict, gets
    each test's "[SKIPPED]" lines."""
    paths = [target] + ([second_path] if second_path else [])
    flags = ["--allow-sanitize"] if allow_sanitize else []
    suite_name = ".".join(suite.split(".")[:2])
    r = sh("timeout", str(timeout), "iscsi-test-cu", "--dataloss", *flags, f"--test={suite}",
           "--initiator-name=iqn.2026-11.org.scst-rs:test-cu",
           "--initiator-name-2=iqn.2026-11.org.scst-rs:test-cu-2", *paths, check=False)
    out = r.stdout + r.stderr
    print(out)
    verdicts = {}
    parts = re.split(r"^\s*Test: (\S+) \.\.\.", out, flags=re.M)
    for name, part in zip(parts[1::2], parts[2::2]):
        # A verdict after the dots or at the start of a line; the test's
        # own "[FAILED] ..." lines report expected errors.
        passed = re.search(r"^\s*passed", part, re.M) is not None
        failed = re.search(r"^\s*FAILED($|[^]])", part, re.M) is not None
        verdicts[f"{suite_name}.{name}"] = passed and not failed and "[SKIPPED]" not in part
        if skipped is not None:
            skipped[f"{suite_name}.{name}"] = re.findall(r"\[SKIPPED\][^\n]*", part)
    return verdicts


@contextlib.contextmanager
def iscsi_daemon():
    """open-iscsi's daemon, running until the block ends (with iscsi_tcp
    loaded and loopback up)."""
    sh("ip", "link", "set", "lo", "up")
    sh("modprobe", "iscsi_tcp")
    os.makedirs("/run/lock/iscsi", exist_ok=True)
    # Its own session: iscsid signals its whole process group on exit.
    daemon = subprocess.Popen(["iscsid", "-f"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(1)
    try:
        yield
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


@contextlib.contextmanager
def open_iscsi_login(iqn, portal="127.0.0.1", settings=()):
    """The kernel's initiator (open-iscsi's iscsid) logged in to `iqn`, an
    enabled target of scst_iscsi, with the node `settings` ((name, value)
    pairs of iscsid.conf) it has; yields a function that lists the sysfs
    directories of the session's SCSI devices, and logs out after."""
    adm = ["timeout", "120", "iscsiadm"]
    with iscsi_daemon():
        try:
            sh(*adm, "-m", "discovery", "-t", "sendtargets", "-p", portal)
            for name, value in settings:
                sh(*adm, "-m", "node", "-T", iqn, "-p", portal, "-o", "update", "-n", name,
                   "-v", str(value))
            sh(*adm, "-m", "node", "-T", iqn, "-p", portal, "--login")
            yield lambda: glob.glob("/sys/class/iscsi_session/session*/device/target*/*:0:0:*")
        finally:
            sh(*adm, "-m", "node", "--logout", check=False)
            sh(*adm, "-m", "node", "-o", "delete", check=False)


@contextlib.contextmanager
def iscsi_export(iqn, dev):
    """Device `dev` as LUN 0 of a new scst_iscsi target `iqn`, enabled; the
    driver is disabled after."""
    sh("ip", "link", "set", "lo", "up")
    mgmt("targets/iscsi/mgmt", f"add_target {iqn}")
    mgmt(f"targets/iscsi/{iqn}/luns/mgmt", f"add {dev} 0")
    mgmt(f"targets/iscsi/{iqn}/enabled", "1")
    mgmt("targets/iscsi/enabled", "1")
    try:
        yield
    finally:
        mgmt("targets/iscsi/enabled", "0")


def iscsi_sessions(iqn):
    """The sessions of scst_iscsi target `iqn`."""
    path = os.path.join(ROOT, "targets/iscsi", iqn, "sessions")
    return os.listdir(path) if os.path.isdir(path) else []


def wait_no_iscsi_sessions(iqn, seconds=30):
    """Whether the target ended every session (none is left holding
    commands) within `seconds`."""
    for _ in range(seconds * 10):
        if not iscsi_sessions(iqn):
            return True
        time.sleep(0.1)
    return False


def unload_leak_free():
    """Unloads the module, checks that kmemleak found none of its objects,
    and loads it again (for the `scst` fixture)."""
    unload()
    assert not os.path.exists(ROOT)
    report = kmemleak_report()
    assert "[scst]" not in report, report
    load()


def local_disk(dev, target, session="s1"):
    """Device `dev` as LUN 0 of a new scst_local target with one session:
    the (sdX, sgN) of the session's disk."""
    mgmt("targets/scst_local/mgmt", f"add_target {target}")
    mgmt(f"targets/scst_local/{target}/luns/mgmt", f"add {dev} 0")
    mgmt("targets/scst_local/mgmt", f"add_session {target} {session}")
    return devices(host_of(target, session))


def local_sessions(dev, target, *sessions):
    """Device `dev` as LUN 0 of a new scst_local target with a session per
    name in `sessions` (each an I_T nexus of its own): their (sdX, sgN),
    with the new nexuses' power-on unit attentions taken."""
    mgmt("targets/scst_local/mgmt", f"add_target {target}")
    mgmt(f"targets/scst_local/{target}/luns/mgmt", f"add {dev} 0")
    nodes = []
    for s in sessions:
        mgmt("targets/scst_local/mgmt", f"add_session {target} {s}")
        nodes.append(devices(host_of(target, s)))
    for _, sg in nodes:
        sh("sg_turs", sg, check=False)
    return nodes


def openable(path):
    """Whether `path` opens: a disk's node exists a moment before the disk
    does (opening it then fails with ENXIO)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def device_of(scsi_devices, pattern):
    """/dev/NAME for the first match of `pattern` (a glob under the sysfs
    directory of a SCSI device `scsi_devices()` lists, such as "block/sd*"),
    once udev made it and it opens; None after 20 s."""
    for _ in range(200):
        found = [p for d in scsi_devices() for p in glob.glob(os.path.join(d, pattern))]
        if found and openable("/dev/" + os.path.basename(found[0])):
            return "/dev/" + os.path.basename(found[0])
        time.sleep(0.1)
    return None


# scst_local: its sessions are SCSI hosts of this kernel.


def host_of(target, session):
    link = os.path.join(ROOT, "targets/scst_local", target, "sessions", session, "host")
    return os.path.basename(os.path.realpath(link))


def devices(host, lun=0):
    """(sdX, sgN) of a LUN of a scst_local host, waiting for them to appear."""
    base = f"/sys/class/scsi_host/{host}/device/target*:0:0/*:0:0:{lun}"
    for _ in range(50):
        sd = glob.glob(base + "/block/*")
        sg = glob.glob(base + "/scsi_generic/*")
        if sd and sg:
            # udev probes a new disk through sd, on the same I_T_L nexus as
            # sg: let it finish, or its reads take the unit attentions a
            # test raises next.
            sh("udevadm", "settle", check=False)
            return "/dev/" + os.path.basename(sd[0]), "/dev/" + os.path.basename(sg[0])
        time.sleep(0.2)
    raise AssertionError(f"no sd/sg for {host} LUN {lun}")


# SCSI commands through the sg driver's SG_IO, from Python threads (no
# process per command).

SG_IO = 0x2285


class _SgIoHdr(ctypes.Structure):
    _fields_ = [("interface_id", ctypes.c_int), ("dxfer_direction", ctypes.c_int),
                ("cmd_len", ctypes.c_ubyte), ("mx_sb_len", ctypes.c_ubyte),
                ("iovec_count", ctypes.c_ushort), ("dxfer_len", ctypes.c_uint),
                ("dxferp", ctypes.c_void_p), ("cmdp", ctypes.c_void_p),
                ("sbp", ctypes.c_void_p), ("timeout", ctypes.c_uint),
                ("flags", ctypes.c_uint), ("pack_id", ctypes.c_int),
                ("usr_ptr", ctypes.c_void_p), ("status", ctypes.c_ubyte),
                ("masked_status", ctypes.c_ubyte), ("msg_status", ctypes.c_ubyte),
                ("sb_len_wr", ctypes.c_ubyte), ("host_status", ctypes.c_ushort),
                ("driver_status", ctypes.c_ushort), ("resid", ctypes.c_int),
                ("duration", ctypes.c_uint), ("info", ctypes.c_uint)]


def sg_io(fd, cdb, data_out=b"", data_in_len=0, timeout_ms=30000):
    """Sends `cdb` on the open sg node `fd`: (SCSI status, sense bytes,
    data-in)."""
    cdb_buf = ctypes.create_string_buffer(bytes(cdb), len(cdb))
    sense = ctypes.create_string_buffer(64)
    length = len(data_out) or data_in_len
    if length >= 1 << 20:
        # Page-aligned: the kernel maps it rather than copy it through a
        # bounce of its own, which takes 4 MiB at most.
        area = mmap.mmap(-1, length)
        area[:len(data_out)] = bytes(data_out)
        data = (ctypes.c_char * length).from_buffer(area)
    elif length:
        data = ctypes.create_string_buffer(bytes(data_out), length) if data_out else \
            ctypes.create_string_buffer(length)
    if data_out:
        direction = -2  # SG_DXFER_TO_DEV
    elif data_in_len:
        direction = -3  # SG_DXFER_FROM_DEV
    else:
        data, direction = None, -1  # SG_DXFER_NONE
    hdr = _SgIoHdr(interface_id=ord("S"), dxfer_direction=direction, cmd_len=len(cdb),
                   mx_sb_len=len(sense), dxfer_len=length,
                   dxferp=ctypes.cast(data, ctypes.c_void_p) if data is not None else None,
                   cmdp=ctypes.cast(cdb_buf, ctypes.c_void_p),
                   sbp=ctypes.cast(sense, ctypes.c_void_p), timeout=timeout_ms)
    fcntl.ioctl(fd, SG_IO, hdr)
    # DRIVER_SENSE (0x08) only says sense data came back.
    assert hdr.host_status == 0 and hdr.driver_status & ~0x08 == 0, \
        (hdr.host_status, hdr.driver_status)
    data_in = data.raw[:length - hdr.resid] if direction == -3 else b""
    return hdr.status, sense.raw[:hdr.sb_len_wr], data_in


def remove_module(name, attempts=20):
    """rmmod `name` once udev no longer holds its disks (bounded retries;
    a module left loaded does not fail the test that used it)."""
    for _ in range(attempts):
        sh("udevadm", "settle", check=False)
        if sh("rmmod", name, check=False).returncode == 0:
            return
        time.sleep(0.5)


@contextlib.contextmanager
def atomic_scsi_debug_disk(size_mb=32):
    """A scsi_debug disk that writes atomically (WRITE ATOMIC (16) under
    the kernel's REQ_ATOMIC): /dev/sdX, removed afterwards."""
    sh("modprobe", "scsi_debug", "atomic_wr=1", f"dev_size_mb={size_mb}")
    try:
        found = []
        for _ in range(100):
            found = glob.glob("/sys/bus/pseudo/drivers/scsi_debug/adapter*/host*/"
                              "target*/*/block/*")
            if found:
                break
            time.sleep(0.1)
        assert found, "scsi_debug made no disk"
        sh("udevadm", "settle", check=False)
        yield "/dev/" + os.path.basename(found[0])
    finally:
        remove_module("scsi_debug")


@contextlib.contextmanager
def slow_null_blk(gb=1, completion_ms=2):
    """null_blk's /dev/nullb0, `gb` GiB that keep no data, each request
    completing after `completion_ms` (a timer): a disk that takes its time,
    for operations that must be seen running. Removed afterwards."""
    sh("modprobe", "null_blk", "nr_devices=1", f"gb={gb}", "irqmode=2",
       f"completion_nsec={completion_ms * 1000000}")
    try:
        for _ in range(100):
            if os.path.exists("/dev/nullb0"):
                break
            time.sleep(0.1)
        sh("udevadm", "settle", check=False)
        yield "/dev/nullb0"
    finally:
        remove_module("null_blk")


# Soft RDMA on the guest's NIC (guest-run -n): rdma_rxe (RoCE v2) and siw
# (iWARP). Neither works on lo: rxe refuses loopback addresses, siw needs a
# MAC and an IPv6 link-local address.
SRPT_MODULE = os.path.join(REPO, "scst_srpt.ko")
RDMA_MODULES = ("ib_srp", "rdma_rxe", "siw", "rdma_cm", "iw_cm", "ib_cm", "ib_core")


def guest_nic():
    """The guest's NIC (guest-run -n), up; None without one."""
    names = sorted(n for n in os.listdir("/sys/class/net")
                   if n != "lo" and os.path.exists(f"/sys/class/net/{n}/device"))
    if not names:
        return None
    sh("ip", "link", "set", "dev", names[0], "up")
    return names[0]


@contextlib.contextmanager
def soft_rdma(kind):
    """An RDMA device of `kind` ("rxe" or "siw") on the guest's NIC, removed
    afterwards; yields its name."""
    nic = guest_nic()
    assert nic, "the guest has no NIC: run it with guest-run -n"
    module = {"rxe": "rdma_rxe", "siw": "siw"}[kind]
    name = f"{kind}_scst0"
    sh("modprobe", module)
    sh("rdma", "link", "add", name, "type", kind, "netdev", nic)
    try:
        deadline = time.monotonic() + 30
        while not glob.glob(f"/sys/class/infiniband/{name}/ports/1/gids/0"):
            assert time.monotonic() < deadline, f"{name}: no port 1"
            time.sleep(0.2)
        yield name
    finally:
        sh("rdma", "link", "delete", name, check=False)


def nic_ipv4(nic, address="192.168.157.1/24"):
    """Gives the guest's NIC an IPv4 address (RoCE v2 and iWARP address by
    IP); returns the address."""
    sh("ip", "addr", "replace", address, "dev", nic)
    return address.split("/")[0]


def node_guid(ibdev):
    """The device's node GUID as ib_srp's add_target takes it (hex)."""
    with open(f"/sys/class/infiniband/{ibdev}/node_guid") as f:
        return f.read().strip().replace(":", "")


def srp_add_target(ibdev, options):
    """ib_srp's add_target on port 1 of `ibdev`; returns 0 or the errno of
    the write (a rejected login fails it)."""
    path = f"/sys/class/infiniband_srp/srp-{ibdev}-1/add_target"
    try:
        with open(path, "w") as f:
            f.write(options)
        return 0
    except OSError as e:
        return e.errno


def port_gids(ibdev):
    """GID 0 of each port of `ibdev`, as sysfs (and SCST) print it."""
    gids = []
    for port in sorted(glob.glob(f"/sys/class/infiniband/{ibdev}/ports/*")):
        with open(os.path.join(port, "gids", "0")) as f:
            gids.append(f.read().strip())
    return gids


def srp_hosts():
    """The SCSI hosts of ib_srp (one per target port it logged in to)."""
    hosts = set()
    for host in glob.glob("/sys/class/scsi_host/host*"):
        # A host being removed may go between the glob and the open.
        with contextlib.suppress(OSError), open(os.path.join(host, "proc_name")) as f:
            if f.read().strip() == "ib_srp":
                hosts.add(os.path.basename(host))
    return hosts


def srp_logout():
    """ib_srp's logout of every remote port (asynchronous)."""
    for port in glob.glob("/sys/class/srp_remote_ports/port-*"):
        with contextlib.suppress(OSError), open(os.path.join(port, "delete"), "w") as f:
            f.write("1")


def srp_hosts_gone(seconds=30):
    """Waits up to `seconds` for ib_srp's hosts to go (its logout is
    asynchronous); returns whether they did."""
    for _ in range(seconds * 10):
        if not srp_hosts():
            return True
        time.sleep(0.1)
    return False


def unload_rdma_stack():
    """Removes the RDMA modules tests loaded, and whatever udev loaded on
    top of them (the holders of ib_core, first)."""
    def remove(name, depth=0):
        holders = f"/sys/module/{name}/holders"
        if depth > 8 or not os.path.isdir(holders):
            return
        for holder in os.listdir(holders):
            remove(holder, depth + 1)
        remove_module(name, attempts=3)
    for name in RDMA_MODULES:
        remove(name)


# Raw iSCSI: hand-made PDUs over a plain socket, for what no initiator sends.

RESERVED = 0xFFFFFFFF


def bhs(opcode, flags=0, dlen=0, itt=0, word20=0, cmd_sn=0, exp_stat_sn=0, rest=b"", lun=0,
        immediate=True, ahs_words=0):
    """A 48-byte Basic Header Segment."""
    b0 = opcode | (0x40 if immediate else 0)
    hdr = struct.pack(">BBxxB", b0, flags, ahs_words) + dlen.to_bytes(3, "big")
    hdr += struct.pack(">QIIII", lun, itt, word20, cmd_sn, exp_stat_sn)
    hdr += rest.ljust(16, b"\0")
    assert len(hdr) == 48
    return hdr


def padded(data):
    return data + b"\0" * (-len(data) % 4)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_pdu(s):
    hdr = recv_exact(s, 48)
    dlen = int.from_bytes(hdr[5:8], "big")
    data = recv_exact(s, dlen + (-dlen % 4))[:dlen]
    return hdr, data


def closed(s, timeout=20):
    """Whether the target closes the connection (reading what it still sends)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def connect(timeout=20):
    return socket.create_connection(("127.0.0.1", 3260), timeout=timeout)


def login_request(keys, isid=b"\x80\x00\x00\x00\x00\x01"):
    """A Login Request from the operational stage to full feature phase."""
    text = b"".join(k + b"\0" for k in keys)
    hdr = bytearray(48)
    hdr[0] = 0x43
    hdr[1] = 0x80 | (1 << 2) | 3  # T, CSG operational, NSG full feature
    hdr[5:8] = len(text).to_bytes(3, "big")
    hdr[8:14] = isid
    hdr[16:20] = (1).to_bytes(4, "big")  # ITT
    hdr[24:28] = (1).to_bytes(4, "big")  # CmdSN
    return bytes(hdr) + padded(text)


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC32C (Castagnoli) of `data`, as an iSCSI digest is computed."""
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def digest(data):
    """The 4 bytes of an iSCSI header or data digest of `data` (RFC 7143
    13.1: CRC32C, sent least significant byte first)."""
    return crc32c(data).to_bytes(4, "little")


def raw_login(iqn, initiator, isid=b"\x80\x00\x00\x00\x00\x01", timeout=20, digests=False):
    """Logs in to `iqn` over a plain socket (no security stage), proposing
    every operational key (CRC32C header and data digests if `digests`),
    until the target moves to full feature phase or refuses; the socket
    and the last Login Response."""
    s = connect(timeout)
    wanted = b"CRC32C" if digests else b"None"
    keys = [f"InitiatorName={initiator}".encode(), f"TargetName={iqn}".encode(),
            b"SessionType=Normal", b"HeaderDigest=" + wanted, b"DataDigest=" + wanted,
            b"InitialR2T=No", b"ImmediateData=Yes", b"MaxBurstLength=1048576",
            b"FirstBurstLength=65536", b"MaxRecvDataSegmentLength=262144",
            b"MaxOutstandingR2T=1", b"ErrorRecoveryLevel=0", b"MaxConnections=1",
            b"DefaultTime2Wait=2", b"DefaultTime2Retain=0", b"DataPDUInOrder=Yes",
            b"DataSequenceInOrder=Yes", b"IFMarker=No", b"OFMarker=No"]
    for _ in range(4):
        s.sendall(login_request(keys, isid))
        rsp, data = recv_pdu(s)
        assert rsp[0] & 0x3F == 0x23, rsp[0]
        if rsp[36] != 0 or (rsp[1] & 0x80 and rsp[1] & 0x03 == 3):
            return s, rsp
        # Every key is settled: ask again to move on.
        keys = []
    raise AssertionError("the target never moved to full feature phase")


def raw_full_feature(iqn, initiator, isid=b"\x80\x00\x00\x00\x00\x01", digests=False):
    """A socket logged in to `iqn` in full feature phase, with the ExpCmdSN
    and StatSN the login ended with."""
    s, rsp = raw_login(iqn, initiator, isid, digests=digests)
    assert rsp[36] == 0, f"login status {rsp[36]:#x}/{rsp[37]:#x}"
    assert rsp[1] & 0x03 == 3, "not in full feature phase"
    exp_cmd_sn = int.from_bytes(rsp[28:32], "big")
    stat_sn = int.from_bytes(rsp[24:28], "big")
    return s, exp_cmd_sn, stat_sn


def ping(s, itt, cmd_sn):
    s.sendall(bhs(0x00, 0x80, itt=itt, word20=RESERVED, cmd_sn=cmd_sn))
    hdr, _ = recv_pdu(s)
    return hdr


SCSI_RESPONSE, DATA_IN, R2T, LOGOUT_RESPONSE, ASYNC_MESSAGE = 0x21, 0x25, 0x31, 0x26, 0x32


def next_reply(s):
    """The next PDU other than a NOP-In ping or an Asynchronous Message
    (such as the SCSI event that reports changed LUNs). A ping is
    answered as a live initiator does (a target with a short
    NopInInterval closes a connection whose pings go unanswered)."""
    while True:
        hdr, data = recv_pdu(s)
        if hdr[0] & 0x3F == ASYNC_MESSAGE:
            continue
        if hdr[0] & 0x3F != 0x20:
            return hdr, data
        # NOP-Out echoing the ping's TTT, at the target's ExpCmdSN.
        s.sendall(bhs(0x00, 0x80, itt=RESERVED, word20=int.from_bytes(hdr[20:24], "big"),
                      cmd_sn=int.from_bytes(hdr[28:32], "big")))


def rw10(op, lba, blocks):
    """A READ(10) or WRITE(10) CDB."""
    return bytes([op, 0, *lba.to_bytes(4, "big"), 0, *blocks.to_bytes(2, "big"), 0])


def write10(s, itt, cmd_sn, lba, data, lun=0):
    """WRITE(10) with its data as immediate data and unsolicited Data-Out
    (InitialR2T=No, FirstBurstLength 64 KiB, as raw_login negotiates),
    then the rest on R2T; returns the response header and data."""
    blocks = len(data) // 512
    first = data[:65536]
    s.sendall(bhs(0x01, 0x80 | 0x20 | 0x01, dlen=len(first), itt=itt, word20=len(data),
                  cmd_sn=cmd_sn, rest=rw10(0x2A, lba, blocks), lun=lun, immediate=False)
              + padded(first))
    while True:
        hdr, rsp = next_reply(s)
        op = hdr[0] & 0x3F
        if op == SCSI_RESPONSE:
            return hdr, rsp
        assert op == R2T, hdr.hex()
        ttt = hdr[20:24]
        offset = int.from_bytes(hdr[40:44], "big")
        want = int.from_bytes(hdr[44:48], "big")
        at, data_sn = offset, 0
        while at < offset + want:
            n = min(offset + want - at, 65536)
            final = at + n >= offset + want
            s.sendall(bhs(0x05, 0x80 if final else 0, dlen=n, itt=itt,
                          word20=int.from_bytes(ttt, "big"),
                          rest=struct.pack(">III", 0, data_sn, at), lun=lun, immediate=False)
                      + padded(data[at:at + n]))
            at += n
            data_sn += 1


def read10(s, itt, cmd_sn, lba, blocks, lun=0):
    """READ(10): the data, the status and the sense data (if any)."""
    s.sendall(bhs(0x01, 0x80 | 0x40 | 0x01, itt=itt, word20=512 * blocks, cmd_sn=cmd_sn,
                  rest=rw10(0x28, lba, blocks), lun=lun, immediate=False))
    out = b""
    while True:
        hdr, data = next_reply(s)
        if hdr[0] & 0x3F == DATA_IN:
            out += data
            if hdr[1] & 0x01:
                return out, hdr[3], b""
        else:
            assert hdr[0] & 0x3F == SCSI_RESPONSE, hdr.hex()
            return out, hdr[3], data[2:]


def logout(s, itt, cmd_sn):
    """Logout "close the session"; the response's code (0: closed)."""
    s.sendall(bhs(0x06, 0x80, itt=itt, cmd_sn=cmd_sn))
    hdr, _ = next_reply(s)
    assert hdr[0] & 0x3F == LOGOUT_RESPONSE, hdr.hex()
    return hdr[2]


def fio_running(dev, seconds=30, *extra):
    """fio at QD32, random 4 KiB reads and writes on `dev` for `seconds`,
    started in the background."""
    return subprocess.Popen(["fio", "--name=busy", f"--filename={dev}", "--allow_file_create=0",
                             "--direct=1",
                             "--ioengine=libaio", "--iodepth=32", "--rw=randrw", "--bs=4k",
                             "--size=32M", "--time_based", f"--runtime={seconds}",
                             "--output-format=terse", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _descendants(pid):
    """The processes `pid` forked, and theirs, from the parent pids /proc
    shows now."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(stat) as f:
                # "pid (comm) state ppid ...": comm may hold spaces.
                fields = f.read().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def kill_fio(proc):
    """Kills a fio started by `fio_running`, with the job processes it
    forked, and returns its output. fio's jobs call setsid(): they are not
    in the parent's process group, so each is killed by pid (they hold the
    output pipes, and their I/O keeps the devices busy)."""
    for pid in [proc.pid] + _descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return proc.communicate(timeout=120)


# --- shared by several test files --------------------------------------

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FILEIO = os.path.join(REPO, "tools/scst_user/target/release/scst-user-fileio")
TAPE = os.path.join(REPO, "tools/scst_user/target/release/scst-user-tape")
VTL = os.path.join(REPO, "tools/scst_user/target/release/scst-user-vtl")
SCSTADMIN = os.path.join(REPO, "tools/scstadmin/target/release/scstadmin")


def scstadmin(*args, check=True):
    """Runs scstadmin; with `check`, it must succeed."""
    assert os.path.exists(SCSTADMIN), "build tools/scstadmin first (cargo build --release)"
    r = subprocess.run([SCSTADMIN, *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, f"scstadmin {' '.join(args)}: {r.stdout}{r.stderr}"
    return r

# Tests that fail on the SG_IO path before the target sees the command, each
# with the reason; over iSCSI they reach the target.
SG_IO_LIMITED = {
    # Writes and reads 65536 blocks (32 MiB) in one WRITE(16)/READ(16);
    # SG_IO refuses a request that large ("SG_IO ioctl failed"), so the
    # read-back compares a stale buffer.
    "SCSI.WriteSame16.Unmap":
        "32 MiB single command exceeds what SG_IO carries",
}


# iSCSI-family tests that fail for now, each with the reason (every SCSI
# suite must pass).
KNOWN_ISCSI_FAILURES = {}


# A block a handler run with --hold-lba holds the READ of.
HELD_BLOCK = b"held block".ljust(512, b".")


def held_block_backing(name, lba, size=16 << 20):
    """A backing file of `size` with HELD_BLOCK at 512-byte block `lba`."""
    path = backing_file(name, size)
    with open(path, "r+b") as f:
        f.seek(lba * 512)
        f.write(HELD_BLOCK)
    return path


def read_block(disk, lba):
    """dd's O_DIRECT read of 512-byte block `lba` of `disk`."""
    return subprocess.run(["dd", f"if={disk}", "bs=512", f"skip={lba}", "count=1",
                           "iflag=direct", "status=none"], capture_output=True, timeout=300)


def held_commands(said):
    """The commands a handler said it held, from its log."""
    return [line.split()[2] for line in said.splitlines() if line.startswith("holding command")]


def abort_received(said, command):
    """Whether the handler's log shows ABORT TASK (fn 0) naming `command`."""
    return re.search(rf"^task management received: fn 0 session \S+ command {command}$", said,
                     re.M) is not None


class Handler:
    """A reference handler process serving device `name`."""

    def __init__(self, name, path, *args, binary=FILEIO):
        assert os.path.exists(binary), "build tools/scst_user first (cargo build --release)"
        self.name = name
        self.proc = subprocess.Popen([binary, *args, name, path], stderr=subprocess.PIPE, text=True)
        # Read as it comes: a handler that logs much must never block on a
        # full pipe.
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr),
                                       daemon=True)
        self.reader.start()
        # REGISTER_DEVICE has returned once both are there (the device's
        # directory appears first).
        made = [os.path.join(ROOT, "devices", name), os.path.join(ROOT, "handlers", name, name)]
        for _ in range(100):
            if all(os.path.exists(p) for p in made):
                return
            if self.proc.poll() is not None:
                self.reader.join(timeout=30)
                raise AssertionError(f"handler exited: {''.join(self.lines)}")
            time.sleep(0.1)
        raise AssertionError("device did not appear")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=30)
        return "".join(self.lines)


@pytest.fixture
def handlers(scst):
    started = []

    def start(name, path, *args, binary=FILEIO):
        h = Handler(name, path, *args, binary=binary)
        started.append(h)
        return h

    yield start
    for h in started:
        h.kill()


# --- tapes: st over scst_local or an initiator, mt-st, tar ---------------


def export_tape(dev, target="t1", session="s1"):
    """(/dev/nstN, /dev/sgN) of `dev` exported through scst_local."""
    sh("modprobe", "st")
    mgmt("targets/scst_local/mgmt", f"add_target {target}")
    mgmt(f"targets/scst_local/{target}/luns/mgmt", f"add {dev} 0")
    mgmt("targets/scst_local/mgmt", f"add_session {target} {session}")
    base = f"/sys/class/scsi_host/{host_of(target, session)}/device/target*:0:0/*:0:0:0"
    for _ in range(100):
        nst = [p for p in glob.glob(base + "/scsi_tape/nst*")
               if os.path.basename(p)[-1].isdigit()]
        sg = glob.glob(base + "/scsi_generic/*")
        if nst and sg:
            sh("udevadm", "settle", check=False)
            nst_dev = "/dev/" + os.path.basename(nst[0])
            for _ in range(50):
                if os.path.exists(nst_dev):
                    return nst_dev, "/dev/" + os.path.basename(sg[0])
                time.sleep(0.1)
        time.sleep(0.2)
    raise AssertionError("no st device for the tape")


def not_busy(attempt):
    """`attempt()` again while the tape is busy: st lets one process open
    it, and udev's probe of a new tape may hold it for a moment."""
    for _ in range(20):
        try:
            r = attempt()
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.5)
            continue
        busy = getattr(r, "returncode", 0) != 0 and \
            "resource busy" in str(getattr(r, "stderr", "")).lower()
        if not busy:
            return r
        time.sleep(0.5)
    raise AssertionError("the tape stayed busy")


def mt(tape, *args, check=True):
    r = not_busy(lambda: subprocess.run(["mt-st", "-f", tape, *args], capture_output=True,
                                        text=True, timeout=300))
    if check:
        assert r.returncode == 0, f"mt {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def tree(root, seed, files):
    """A directory of `files` files of random sizes; {name: sha256}."""
    os.makedirs(root, exist_ok=True)
    sums = {}
    for i in range(files):
        data = os.urandom(1000 + (seed * 7919 + i * 104729) % 300000)
        name = f"f{seed}-{i}.bin"
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    return sums


def sums_of(root):
    out = {}
    for name in os.listdir(root):
        with open(os.path.join(root, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def fresh(path):
    if os.path.exists(path):
        os.unlink(path)
    return path
