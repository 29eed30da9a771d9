# SPDX-License-Identifier: GPL-2.0
"""`make install` against the test kernel's build tree: scst.ko (and
scst_srpt.ko) where `modprobe scst` finds it (modules_install and
depmod), scstadmin, the
scst_user header and handlers, the init script and unit."""

import os
import shutil
import subprocess

from conftest import REPO, loaded, sh, unload


def test_make_install_then_modprobe():
    kdir = os.environ["SCST_KDIR"]
    stage = os.path.join(os.environ["SCST_SCRATCH"], "install-stage")
    shutil.rmtree(stage, ignore_errors=True)
    r = subprocess.run(["make", "-s", "-C", REPO, "install", f"KDIR={kdir}", f"DESTDIR={stage}",
                        "PREFIX=/usr"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    release = os.uname().release
    moddir = os.path.join(stage, "lib/modules", release)
    assert os.path.exists(os.path.join(moddir, "updates/scst.ko"))
    with open(os.path.join(moddir, "modules.dep")) as f:
        deps = {line.split(":")[0]: line.split(":")[1].split() for line in f}
    assert "updates/scst.ko" in deps, "depmod indexed the module"
    # The SRP target's link to the RDMA stack, on top of scst.ko (the
    # staging tree has none of the kernel's own modules to depend on).
    assert "updates/scst.ko" in deps.get("updates/scst_srpt.ko", []), deps
    for path in ["usr/sbin/scstadmin", "usr/bin/scst-user-fileio", "usr/bin/scst-user-tape",
                 "usr/include/scst/scst_user.h", "etc/init.d/scst",
                 "lib/systemd/system/scst.service", "usr/share/doc/scst-rs/scstadmin.rst"]:
        assert os.path.exists(os.path.join(stage, path)), path
    assert os.stat(os.path.join(stage, "var/lib/scst/pr")).st_mode & 0o777 == 0o700
    # modprobe finds it by name, as on an installed system.
    if loaded():
        unload()
    sh("modprobe", "-d", stage, "scst")
    try:
        assert loaded()
        out = subprocess.run([os.path.join(stage, "usr/sbin/scstadmin"), "-list_handler"],
                             capture_output=True, text=True, check=True).stdout
        assert "vdisk_fileio" in out
    finally:
        sh("modprobe", "-d", stage, "-r", "scst")
    assert not loaded()
