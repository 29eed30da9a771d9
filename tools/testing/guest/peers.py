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


@contextlib.contextmanager
def lio_target(backing, port=LIO_PORT, iqn=PEER_IQN):
    """LIO serving `backing` (a file) as LUN 0 of `iqn` on 127.0.0.1:port,
    open to every initiator without authentication; yields the LUN's URL."""
    for m in ["target_core_mod", "target_core_file", "iscsi_target_mod"]:
        _sh("modprobe", m)
    if not os.path.ismount(CONFIGFS):
        _sh("mount", "-t", "configfs", "none", CONFIGFS)
    core = f"{CONFIGFS}/target/core/fileio_0/peer"
    tpg = f"{CONFIGFS}/target/iscsi/{iqn}/tpgt_1"
    size = os.path.getsize(backing)
    try:
        os.makedirs(core)
        _write(f"{core}/control", f"fd_dev_name={backing},fd_dev_size={size}")
        _write(f"{core}/enable", "1")
        # UNMAP and WRITE SAME with UNMAP, as the scst-rs LUN offers them.
        _write(f"{core}/attrib/emulate_tpu", "1")
        _write(f"{core}/attrib/emulate_tpws", "1")
        os.makedirs(f"{tpg}/lun/lun_0")
        os.symlink(core, f"{tpg}/lun/lun_0/peer")
        os.makedirs(f"{tpg}/np/127.0.0.1:{port}")
        _write(f"{tpg}/attrib/authentication", "0")
        _write(f"{tpg}/attrib/generate_node_acls", "1")
        _write(f"{tpg}/attrib/demo_mode_write_protect", "0")
        _write(f"{tpg}/attrib/cache_dynamic_acls", "1")
        _write(f"{tpg}/enable", "1")
        yield f"iscsi://127.0.0.1:{port}/{iqn}/0"
    finally:
        _lio_teardown(core, tpg, iqn, port)


def _lio_teardown(core, tpg, iqn, port):
    def quietly(f, *a):
        with contextlib.suppress(OSError):
            f(*a)
    if os.path.exists(f"{tpg}/enable"):
        quietly(_write, f"{tpg}/enable", "0")
    quietly(os.unlink, f"{tpg}/lun/lun_0/peer")
    quietly(os.rmdir, f"{tpg}/lun/lun_0")
    quietly(os.rmdir, f"{tpg}/np/127.0.0.1:{port}")
    quietly(os.rmdir, tpg)
    quietly(os.rmdir, f"{CONFIGFS}/target/iscsi/{iqn}")
    quietly(os.rmdir, core)
    quietly(os.rmdir, os.path.dirname(core))


@contextlib.contextmanager
def tgt_target(backing, port=TGT_PORT, iqn=PEER_IQN):
    """tgtd serving `backing` as LUN 1 of `iqn` on 127.0.0.1:port (tgt's
    LUN 0 is its controller); yields the disk LUN's URL."""
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
        _sh(*adm, "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
            "-b", backing)
        _sh(*adm, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        yield f"iscsi://127.0.0.1:{port}/{iqn}/1"
    finally:
        _sh("tgtadm", "--op", "delete", "--mode", "system", "--force", check=False)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
