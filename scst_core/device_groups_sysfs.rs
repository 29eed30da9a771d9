// SPDX-License-Identifier: GPL-2.0

//! The files of `device_groups/`: what their reads show (from the
//! groups' atomics, never under a lock that removal holds) and where
//! their writes go (`device_groups.rs`).

use super::device::key_mark;
use super::device_groups::PortGroup;
use super::Scst;
use crate::kernel_ext::sysfs::{SysfsBuf, SysfsOps};
use core::fmt::Write;
use core::sync::atomic::{AtomicU16, Ordering};
use kernel::{prelude::*, str::CString, sync::Arc};

/// The files of the device group tree.
#[derive(Clone, Copy)]
pub(crate) enum AluaAttr {
    /// `device_groups/mgmt`.
    GroupsMgmt,
    /// `device_groups/<dg>/devices/mgmt`.
    DevicesMgmt,
    /// `device_groups/<dg>/target_groups/mgmt`.
    TargetGroupsMgmt,
    /// `device_groups/<dg>/target_groups/<tg>/mgmt`.
    TargetGroupMgmt,
    GroupId,
    State,
    Preferred,
}

/// Serves the files of the tree, of one device group (`dg`) and of one
/// of its target groups (`tg`).
pub(crate) struct AluaOps {
    pub(crate) scst: Arc<Scst>,
    pub(crate) dg: Option<CString>,
    pub(crate) tg: Option<Arc<PortGroup>>,
}

const GROUPS_HELP: &str = "Usage: echo \"create group_name\" >mgmt\n\
     \x20      echo \"del group_name\" >mgmt\n";
const DEVICES_HELP: &str = "Usage: echo \"add device\" >mgmt\n\
     \x20      echo \"del device\" >mgmt\n";
const TARGET_GROUPS_HELP: &str = "Usage: echo \"create group_name\" >mgmt\n\
     \x20      echo \"del group_name\" >mgmt\n";
const TARGET_GROUP_HELP: &str = "Usage: echo \"add target\" >mgmt\n\
     \x20      echo \"del target\" >mgmt\n";

impl SysfsOps for AluaOps {
    type Attr = AluaAttr;

    fn show(&self, attr: AluaAttr, out: &mut SysfsBuf) -> Result {
        let _ = match (attr, &self.tg) {
            (AluaAttr::GroupsMgmt, _) => out.write_str(GROUPS_HELP),
            (AluaAttr::DevicesMgmt, _) => out.write_str(DEVICES_HELP),
            (AluaAttr::TargetGroupsMgmt, _) => out.write_str(TARGET_GROUPS_HELP),
            (AluaAttr::TargetGroupMgmt, _) => out.write_str(TARGET_GROUP_HELP),
            (AluaAttr::GroupId, Some(g)) => {
                let id = g.group_id.load(Ordering::Relaxed);
                let _ = writeln!(out, "{id}");
                key_mark(out, id != 0);
                Ok(())
            }
            (AluaAttr::State, Some(g)) => {
                // Always part of the configuration, as in SCST.
                let _ = writeln!(out, "{}", g.state().name());
                key_mark(out, true);
                Ok(())
            }
            (AluaAttr::Preferred, Some(g)) => {
                let v = g.preferred.load(Ordering::Relaxed);
                let _ = writeln!(out, "{}", u8::from(v));
                key_mark(out, v);
                Ok(())
            }
            _ => return Err(EIO),
        };
        Ok(())
    }

    fn store(&self, attr: AluaAttr, input: &[u8]) -> Result {
        self.scst.alua_store(self, attr, input)
    }
}

/// Serves the `rel_tgt_id` of another node's target port.
pub(crate) struct RemotePortOps {
    pub(crate) scst: Arc<Scst>,
    pub(crate) id: Arc<AtomicU16>,
}

impl SysfsOps for RemotePortOps {
    type Attr = ();

    fn show(&self, (): (), out: &mut SysfsBuf) -> Result {
        let id = self.id.load(Ordering::Relaxed);
        let _ = writeln!(out, "{id}");
        key_mark(out, id != 0);
        Ok(())
    }

    fn store(&self, (): (), input: &[u8]) -> Result {
        self.scst.remote_port_store(&self.id, input)
    }
}
