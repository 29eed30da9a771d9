# SPDX-License-Identifier: GPL-2.0
"""The peers scst-rs is compared with, in the same guest: LIO (the test
kernel's iSCSI target, configured through configfs) and tgt (Debian's
tgtd). Each serves one LUN backed by a file over loopback, on its own port
so that scst-rs may listen on 3260 meanwhile."""

import contextlib
import os
import shutil
import subprocess
import time

CONFIGFS = "/sys/kernel/config"
LIO_PORT = 3262
TGT_PORT = 3263
PEER_IQN = "iqn.2026-11.org.scst-rs:peer"


def _sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


# A backing with no storage: LIO's rd_mcp with rd_nullio, tgt's null store.
NULL = None
NULL_SIZE = 256 << 20


def _lio_modules():
    for m in ["target_core_mod", "target_core_file", "target_core_iblock", "iscsi_target_mod"]:
        _sh("modprobe", m)
    if not os.path.ismount(CONFIGFS):
        _sh("mount", "-t", "configfs", "none", CONFIGFS)
    # Where LIO writes its persistent reservation state, on every PERSISTENT
    # RESERVE OUT (targetcli's packages create it); without it LIO answers
    # them LOGICAL UNIT COMMUNICATION FAILURE.
    os.makedirs("/var/target/pr", exist_ok=True)


def _quietly(f, *a):
    with contextlib.suppress(OSError):
        f(*a)


@contextlib.contextmanager
def lio_backstores(*backings, name="peer"):
    """One LIO backstore per backing (a file, a block device as iblock, or
    NULL for an rd_mcp nullio store of NULL_SIZE); yields their configfs
    paths, for fabrics to link."""
    _lio_modules()
    cores = []
    try:
        for i, backing in enumerate(backings):
            if backing is NULL:
                core = f"{CONFIGFS}/target/core/rd_mcp_{i}/{name}{i}"
                control = f"rd_pages={NULL_SIZE >> 12},rd_nullio=1"
            elif backing.startswith("/dev/"):
                core = f"{CONFIGFS}/target/core/iblock_{i}/{name}{i}"
                control = f"udev_path={backing}"
            else:
                core = f"{CONFIGFS}/target/core/fileio_{i}/{name}{i}"
                control = f"fd_dev_name={backing},fd_dev_size={os.path.getsize(backing)}"
            os.makedirs(core)
            cores.append(core)
            _write(f"{core}/control", control)
            _write(f"{core}/enable", "1")
            if backing is not NULL and not backing.startswith("/dev/"):
                # UNMAP and WRITE SAME with UNMAP, as the scst-rs LUN offers them.
                _write(f"{core}/attrib/emulate_tpu", "1")
                _write(f"{core}/attrib/emulate_tpws", "1")
        yield cores
    finally:
        for core in cores:
            _quietly(os.rmdir, core)
            _quietly(os.rmdir, os.path.dirname(core))


@contextlib.contextmanager
def lio_iscsi(cores, port=LIO_PORT, iqn=PEER_IQN):
    """LIO's iSCSI fabric serving `cores` as LUNs 0, 1, ... of `iqn` on
    127.0.0.1:port, open to every initiator without authentication; yields
    the LUNs' URLs."""
    tpg = f"{CONFIGFS}/target/iscsi/{iqn}/tpgt_1"
    luns = []
    try:
        os.makedirs(f"{tpg}/np/127.0.0.1:{port}")
        for i, core in enumerate(cores):
            os.makedirs(f"{tpg}/lun/lun_{i}")
            luns.append(f"{tpg}/lun/lun_{i}")
            os.symlink(core, f"{tpg}/lun/lun_{i}/{os.path.basename(core)}")
        _write(f"{tpg}/attrib/authentication", "0")
        _write(f"{tpg}/attrib/generate_node_acls", "1")
        _write(f"{tpg}/attrib/demo_mode_write_protect", "0")
        _write(f"{tpg}/attrib/cache_dynamic_acls", "1")
        _write(f"{tpg}/enable", "1")
        yield [f"iscsi://127.0.0.1:{port}/{iqn}/{i}" for i in range(len(cores))]
    finally:
        if os.path.exists(f"{tpg}/enable"):
            _quietly(_write, f"{tpg}/enable", "0")
        _unlink_luns(luns)
        _quietly(os.rmdir, f"{tpg}/np/127.0.0.1:{port}")
        _quietly(os.rmdir, tpg)
        _quietly(os.rmdir, f"{CONFIGFS}/target/iscsi/{iqn}")


def _unlink_luns(luns):
    for lun in luns:
        for link in os.listdir(lun) if os.path.isdir(lun) else []:
            if os.path.islink(f"{lun}/{link}"):
                _quietly(os.unlink, f"{lun}/{link}")
        _quietly(os.rmdir, lun)


@contextlib.contextmanager
def lio_target(backing, port=LIO_PORT, iqn=PEER_IQN):
    """LIO serving `backing` (a file) as LUN 0 of `iqn` on 127.0.0.1:port;
    yields the LUN's URL."""
    with lio_backstores(backing) as cores, lio_iscsi(cores, port, iqn) as urls:
        yield urls[0]


# LIO's SRP target listens with RDMA/CM on a port of its own, beside
# scst_srpt's.
LIO_SRPT_PORT = 5001


@contextlib.contextmanager
def lio_srpt(cores, ibdev, initiator, rdma_cm_port=LIO_SRPT_PORT):
    """LIO's SRP target (ib_srpt) serving `cores` as LUNs 0, 1, ... on port
    1 of `ibdev` (the target port named by its GUID) to `initiator`, the
    address RDMA/CM logins name their LIO sessions after; listening on
    `rdma_cm_port`."""
    _lio_modules()
    _sh("modprobe", "ib_srpt")
    # The fabric's directory appears on its first mkdir.
    os.makedirs(f"{CONFIGFS}/target/srpt", exist_ok=True)
    _write(f"{CONFIGFS}/target/srpt/discovery_auth/rdma_cm_port", str(rdma_cm_port))
    with open(f"/sys/class/infiniband/{ibdev}/ports/1/gids/0") as f:
        # LIO's GUID name: the GID's interface identifier, as 4 groups.
        guid = ":".join(f.read().strip().split(":")[4:])
    tport = f"{CONFIGFS}/target/srpt/{guid}"
    tpg = f"{tport}/tpg_1"
    acl = f"{tpg}/acls/{initiator}"
    luns, mapped = [], []
    try:
        os.makedirs(tpg)
        for i, core in enumerate(cores):
            os.makedirs(f"{tpg}/lun/lun_{i}")
            luns.append(f"{tpg}/lun/lun_{i}")
            os.symlink(core, f"{tpg}/lun/lun_{i}/{os.path.basename(core)}")
        os.makedirs(acl)
        for i, lun in enumerate(luns):
            os.makedirs(f"{acl}/lun_{i}")
            mapped.append(f"{acl}/lun_{i}")
            os.symlink(lun, f"{acl}/lun_{i}/lun_{i}")
        _write(f"{tpg}/enable", "1")
        yield guid
    finally:
        if os.path.exists(f"{tpg}/enable"):
            _quietly(_write, f"{tpg}/enable", "0")
        _unlink_luns(mapped)
        _quietly(os.rmdir, acl)
        _unlink_luns(luns)
        _quietly(os.rmdir, tpg)
        _quietly(os.rmdir, tport)
        # The fabric's directory holds the module.
        _quietly(os.rmdir, f"{CONFIGFS}/target/srpt")
        _sh("rmmod", "ib_srpt", check=False)


TCM_LOOP_WWN = "naa.5001405000000b01"
TCM_LOOP_NEXUS = "naa.5001405000000b02"


@contextlib.contextmanager
def tcm_loop(cores):
    """LIO's loopback fabric (tcm_loop): `cores` as LUNs 0, 1, ... of a
    local SCSI host; yields that host's name (hostN)."""
    _sh("modprobe", "tcm_loop")
    tpg = f"{CONFIGFS}/target/loopback/{TCM_LOOP_WWN}/tpgt_1"
    luns = []
    try:
        # The nexus first: a LUN added without one is scanned and lost.
        os.makedirs(tpg)
        _write(f"{tpg}/nexus", TCM_LOOP_NEXUS)
        for i, core in enumerate(cores):
            os.makedirs(f"{tpg}/lun/lun_{i}")
            luns.append(f"{tpg}/lun/lun_{i}")
            os.symlink(core, f"{tpg}/lun/lun_{i}/{os.path.basename(core)}")
        yield _tcm_loop_host()
    finally:
        # The LUNs first: the nexus cannot go while they hold the port.
        _unlink_luns(luns)
        if os.path.exists(f"{tpg}/nexus"):
            _quietly(_write, f"{tpg}/nexus", "NULL")
        _quietly(os.rmdir, tpg)
        _quietly(os.rmdir, f"{CONFIGFS}/target/loopback/{TCM_LOOP_WWN}")


def _tcm_loop_host():
    for _ in range(100):
        for host in sorted(os.listdir("/sys/class/scsi_host")):
            with open(f"/sys/class/scsi_host/{host}/proc_name") as f:
                if f.read().strip() == "tcm_loopback":
                    return host
        time.sleep(0.1)
    raise AssertionError("tcm_loop created no SCSI host")


@contextlib.contextmanager
def tgt_luns(*backings, port=TGT_PORT, iqn=PEER_IQN):
    """tgtd serving each of `backings` (a file, or NULL for tgt's null
    store) as LUNs 1, 2, ... of `iqn` on 127.0.0.1:port (tgt's LUN 0 is its
    controller); yields the LUNs' URLs."""
    assert shutil.which("tgtd"), "tgt is not installed (tools/testing/setup installs it)"
    os.makedirs("/run/tgtd", exist_ok=True)
    # -f: stays in the foreground, so it is this test's child to stop.
    daemon = subprocess.Popen(["tgtd", "-f", "--iscsi", f"portal=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        adm = ["tgtadm", "--lld", "iscsi"]
        for _ in range(100):
            if _sh(*adm, "--op", "show", "--mode", "target", check=False).returncode == 0:
                break
            time.sleep(0.1)
        _sh(*adm, "--op", "new", "--mode", "target", "--tid", "1", "-T", iqn)
        for lun, backing in enumerate(backings, start=1):
            store = ["--bstype", "null", "-b", "/dev/null"] if backing is NULL else ["-b", backing]
            _sh(*adm, "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(lun), *store)
        _sh(*adm, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        yield [f"iscsi://127.0.0.1:{port}/{iqn}/{lun}" for lun in range(1, len(backings) + 1)]
    finally:
        _sh("tgtadm", "--op", "delete", "--mode", "system", "--force", check=False)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@contextlib.contextmanager
def tgt_target(backing, port=TGT_PORT, iqn=PEER_IQN):
    """tgtd serving `backing` as LUN 1 of `iqn`; yields the LUN's URL."""
    with tgt_luns(backing, port=port, iqn=iqn) as urls:
        yield urls[0]
