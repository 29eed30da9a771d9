// SPDX-License-Identifier: GPL-2.0

//! ALUA as SCST configures it: `device_groups/<dg>/devices/` names the
//! devices that share access states, `device_groups/<dg>/target_groups/<tg>/`
//! a target port group (`group_id`, `state`, `preferred`) and its target
//! ports: targets of this system (a link to the target) or of another
//! node of a cluster (a directory with that port's `rel_tgt_id`).
//!
//! The configuration is kept here; each device of a device group gets an
//! immutable [`AluaView`] of its target port groups, and each of its
//! I_T_L nexuses the packed [`PortView`] of its own port, which the
//! command path reads with one atomic load (`alua.rs` has the rules).
//!
//! # Locks
//!
//! Management writes take the registry, then [`AluaConfig::groups`]; SET
//! TARGET PORT GROUPS takes only the latter, on a core worker. Neither is
//! held while anything waits for commands, and no sysfs read takes one.
//! A device's view lock comes before its nexus list.

use super::alua::{self, AccessState, GroupCommand, GroupReport, PortView};
use super::buffer::parameter_list;
use super::cdb::{Cdb, Out};
use super::device::{DataDirection, DeviceState};
use super::device_groups_sysfs::{AluaAttr, AluaOps, RemotePortOps};
use super::mgmt::{parse_bool, parse_ranged, Line, MgmtError};
use super::sense::{self, Sense, SenseFormat};
use super::session::{status, Response, TargetState, TgtDev};
use super::{cstring, MgmtOutcome, Registry, Scst};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::{Dir, File, Link, Mode};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_mutex,
    prelude::*,
    str::CString,
    sync::{Arc, Mutex},
};

/// Most target ports one target port group reports (its descriptor's
/// TARGET PORT COUNT is one byte).
const MAX_GROUP_PORTS: usize = 255;

/// A target port group's settings, shared by its sysfs files, the views
/// of its devices and SET TARGET PORT GROUPS.
pub(crate) struct PortGroup {
    pub(crate) name: CString,
    pub(crate) group_id: AtomicU16,
    state: AtomicU8,
    pub(crate) preferred: AtomicBool,
    /// Why the state is what it is ([`alua::status`]).
    status: AtomicU8,
}

impl PortGroup {
    pub(crate) fn state(&self) -> AccessState {
        AccessState::from_code(self.state.load(Ordering::Relaxed)).unwrap_or(AccessState::Optimized)
    }

    fn set_state(&self, state: AccessState, why: u8) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.status.store(why, Ordering::Relaxed);
    }
}

/// A target port of a target port group.
#[derive(Clone)]
enum Port {
    /// A target of this system: its own `rel_tgt_id`.
    Local(Arc<TargetState>),
    /// A target port of another node, known by its relative id only.
    Remote(Arc<AtomicU16>),
}

impl Port {
    fn rel_tgt_id(&self) -> u16 {
        match self {
            Self::Local(t) => t.rel_tgt_id.load(Ordering::Relaxed),
            Self::Remote(id) => id.load(Ordering::Relaxed),
        }
    }
}

/// What the commands of a device group's devices see of it: the target
/// port groups and their ports. Rebuilt when the membership changes; the
/// states are read live from the [`PortGroup`]s.
pub(crate) struct AluaView {
    groups: KVec<(Arc<PortGroup>, KVec<Port>)>,
}

impl AluaView {
    /// The group of `target`'s port, with its id and state.
    fn port_of(&self, target: &Arc<TargetState>) -> Option<(u16, AccessState)> {
        self.groups.iter().find_map(|(g, ports)| {
            ports
                .iter()
                .any(|p| matches!(p, Port::Local(t) if Arc::ptr_eq(t, target)))
                .then(|| (g.group_id.load(Ordering::Relaxed), g.state()))
        })
    }

    /// REPORT TARGET PORT GROUPS parameter data.
    fn report(&self, cdb: Cdb<'_>, out: &mut Out<'_>) -> core::result::Result<(), Sense> {
        let mut report = GroupReport::begin(cdb, out)?;
        for (g, ports) in self.groups.iter() {
            report.group(
                g.group_id.load(Ordering::Relaxed),
                g.state(),
                g.preferred.load(Ordering::Relaxed),
                g.status.load(Ordering::Relaxed),
                ports.len().min(MAX_GROUP_PORTS) as u8,
            );
            for p in ports.iter().take(MAX_GROUP_PORTS) {
                report.port(p.rel_tgt_id());
            }
        }
        report.finish();
        Ok(())
    }
}

impl DeviceState {
    /// The packed [`PortView`] of `tgt_dev`'s port under `view`.
    pub(crate) fn alua_bits(&self, view: Option<&AluaView>, tgt_dev: &TgtDev) -> u32 {
        PortView::encode(view.map(|v| PortView {
            explicit: self.expl_alua.load(Ordering::Relaxed),
            port: v.port_of(&tgt_dev.target),
        }))
    }

    /// Replaces the device's view and tells every nexus.
    fn publish_alua(&self, view: Option<Arc<AluaView>>) {
        let old = {
            let mut current = self.alua.lock();
            let old = core::mem::replace(&mut *current, view);
            self.spread_alua(current.as_deref());
            old
        };
        // The last reference to a view may hold the last one to a target's
        // state: dropped outside the spinlock.
        drop(old);
    }

    fn spread_alua(&self, view: Option<&AluaView>) {
        for t in self.tgt_devs.lock().iter() {
            t.alua.store(self.alua_bits(view, t), Ordering::Relaxed);
        }
    }

    /// Something every nexus sees of ALUA changed (a state, `expl_alua`):
    /// the nexuses get their new view and unit attention `ua`.
    pub(crate) fn alua_changed(&self, ua: Sense) {
        self.respread_alua();
        self.raise_ua(ua, None);
    }

    /// Gives every nexus its view again, after a state, group id or
    /// `expl_alua` changed.
    fn respread_alua(&self) {
        let view = self.alua.lock();
        self.spread_alua(view.as_deref());
    }

    /// Whether the device is in a device group.
    fn in_device_group(&self) -> bool {
        self.alua.lock().is_some()
    }
}

/// The configuration: every device group.
#[pin_data]
pub(crate) struct AluaConfig {
    #[pin]
    groups: Mutex<KVec<DeviceGroup>>,
}

impl AluaConfig {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                groups <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }
}

struct GroupDevice {
    dev: Arc<DeviceState>,
    _link: Link,
}

/// How a target port appears under its group: a link to a local target,
/// a directory with `rel_tgt_id` for another node's.
enum PortEntry {
    Link {
        _link: Link,
    },
    Remote {
        _file: File<RemotePortOps>,
        _dir: Dir,
    },
}

struct Member {
    name: CString,
    port: Port,
    _entry: PortEntry,
}

struct TargetGroup {
    group: Arc<PortGroup>,
    members: KVec<Member>,
    _files: KVec<File<AluaOps>>,
    dir: Dir,
}

/// One device group. Fields drop in order: entries before their
/// directories.
struct DeviceGroup {
    name: CString,
    devices: KVec<GroupDevice>,
    target_groups: KVec<TargetGroup>,
    _files: KVec<File<AluaOps>>,
    devices_dir: Dir,
    target_groups_dir: Dir,
    _dir: Dir,
}

impl DeviceGroup {
    fn view(&self) -> Result<Arc<AluaView>> {
        let mut groups = KVec::with_capacity(self.target_groups.len(), GFP_KERNEL)?;
        for tg in self.target_groups.iter() {
            let mut ports = KVec::with_capacity(tg.members.len(), GFP_KERNEL)?;
            for m in tg.members.iter() {
                ports.push(m.port.clone(), GFP_KERNEL)?;
            }
            groups.push((tg.group.clone(), ports), GFP_KERNEL)?;
        }
        Ok(Arc::new(AluaView { groups }, GFP_KERNEL)?)
    }

    /// Gives every device the group's current view, after a change of
    /// membership; their nexuses hear of it.
    fn republish(&self) -> Result {
        let view = self.view()?;
        for d in self.devices.iter() {
            d.dev.publish_alua(Some(view.clone()));
            d.dev.raise_ua(sense::ASYMMETRIC_ACCESS_STATE_CHANGED, None);
        }
        Ok(())
    }

    /// A state or group id changed: every device's nexuses learn it; all
    /// but the `sender`'s own (SET TARGET PORT GROUPS) get `ua`.
    fn states_changed(&self, ua: Option<Sense>, sender: Option<&TgtDev>) {
        for d in self.devices.iter() {
            d.dev.respread_alua();
            let Some(ua) = ua else { continue };
            for t in d.dev.tgt_devs.lock().iter() {
                let same_nexus =
                    sender.is_some_and(|s| s.port == t.port && Arc::ptr_eq(&s.target, &t.target));
                if !same_nexus {
                    t.queue_ua(ua);
                }
            }
        }
    }

    /// The entry of `group`, which a write of one of its files names:
    /// gone when the group was deleted meanwhile.
    fn target_group<'a>(
        &mut self,
        group: &Arc<PortGroup>,
    ) -> core::result::Result<&mut TargetGroup, MgmtError<'a>> {
        self.target_groups
            .iter_mut()
            .find(|tg| Arc::ptr_eq(&tg.group, group))
            .ok_or(MgmtError::Refused("the target group is being removed"))
    }

    fn has_port(&self, name: &str) -> bool {
        self.target_groups.iter().any(|tg| {
            tg.members
                .iter()
                .any(|m| m.name.as_bytes() == name.as_bytes())
        })
    }
}

fn name_eq(c: &CString, s: &str) -> bool {
    c.as_bytes() == s.as_bytes()
}

fn find_group<'g, 'a>(
    groups: &'g mut KVec<DeviceGroup>,
    name: &CString,
) -> core::result::Result<&'g mut DeviceGroup, MgmtError<'a>> {
    groups
        .iter_mut()
        .find(|g| g.name.as_bytes() == name.as_bytes())
        .ok_or(MgmtError::Refused("the device group is being removed"))
}

impl Scst {
    /// Serves a write of one of the `device_groups/` files.
    pub(super) fn alua_store(
        self: &Arc<Self>,
        ops: &AluaOps,
        attr: AluaAttr,
        input: &[u8],
    ) -> Result {
        let file = match attr {
            AluaAttr::GroupsMgmt => "device_groups/mgmt",
            AluaAttr::DevicesMgmt => "devices/mgmt",
            AluaAttr::TargetGroupsMgmt => "target_groups/mgmt",
            AluaAttr::TargetGroupMgmt => "target group mgmt",
            AluaAttr::GroupId => "group_id",
            AluaAttr::State => "state",
            AluaAttr::Preferred => "preferred",
        };
        self.run_mgmt(file, input, |registry, line| {
            let mut groups = self.alua_config.groups.lock();
            if let AluaAttr::GroupsMgmt = attr {
                return self.groups_mgmt(&mut groups, line);
            }
            let dg_name = ops.dg.as_ref().ok_or(EINVAL)?;
            let dg = find_group(&mut groups, dg_name)?;
            match (attr, &ops.tg) {
                (AluaAttr::DevicesMgmt, _) => devices_mgmt(registry, dg, line),
                (AluaAttr::TargetGroupsMgmt, _) => self.target_groups_mgmt(dg, line),
                (AluaAttr::TargetGroupMgmt, Some(g)) => ports_mgmt(self, registry, dg, g, line),
                (AluaAttr::GroupId, Some(g)) => set_group_id(dg, g, line),
                (AluaAttr::State, Some(g)) => set_state(dg, g, line),
                (AluaAttr::Preferred, Some(g)) => set_preferred(dg, g, line),
                _ => Err(EINVAL.into()),
            }
        })
    }

    /// Writes of a remote target port's `rel_tgt_id`.
    pub(super) fn remote_port_store(&self, id: &AtomicU16, input: &[u8]) -> Result {
        self.run_mgmt("rel_tgt_id", input, |_registry, line| {
            let v = parse_ranged("rel_tgt_id", line.verb(), 1, 0xffff)?;
            line.end()?;
            // Under the configuration lock: SET TARGET PORT GROUPS and
            // reports see either value whole.
            let _groups = self.alua_config.groups.lock();
            id.store(v as u16, Ordering::Relaxed);
            Ok(())
        })
    }

    fn groups_mgmt<'a>(
        self: &Arc<Self>,
        groups: &mut KVec<DeviceGroup>,
        mut line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        match line.verb() {
            "create" | "add" => {
                let name = line.name("device group name")?;
                line.end()?;
                if groups.iter().any(|g| name_eq(&g.name, name)) {
                    return Err(MgmtError::AlreadyExists(name).into());
                }
                let dir = Dir::new(&self.device_groups_dir, name)?;
                let devices_dir = Dir::new(&dir, "devices")?;
                let target_groups_dir = Dir::new(&dir, "target_groups")?;
                let ops = Arc::new(
                    AluaOps {
                        scst: self.clone(),
                        dg: Some(cstring(name)?),
                        tg: None,
                    },
                    GFP_KERNEL,
                )?;
                let mut files = KVec::new();
                for (d, attr) in [
                    (&devices_dir, AluaAttr::DevicesMgmt),
                    (&target_groups_dir, AluaAttr::TargetGroupsMgmt),
                ] {
                    files.push(
                        File::new(d, c_str!("mgmt"), Mode::ReadWrite, ops.clone(), attr)?,
                        GFP_KERNEL,
                    )?;
                }
                groups.push(
                    DeviceGroup {
                        name: cstring(name)?,
                        devices: KVec::new(),
                        target_groups: KVec::new(),
                        _files: files,
                        devices_dir,
                        target_groups_dir,
                        _dir: dir,
                    },
                    GFP_KERNEL,
                )?;
                pr_info!("added device group {}\n", name);
                Ok(())
            }
            "del" => {
                let name = line.name("device group name")?;
                line.end()?;
                let i = groups
                    .iter()
                    .position(|g| name_eq(&g.name, name))
                    .ok_or(MgmtError::NoSuchObject(name))?;
                let dg = groups.swap_remove(i).ok_or(MgmtError::NoSuchObject(name))?;
                for d in dg.devices.iter() {
                    leave_group(&d.dev);
                }
                pr_info!("removed device group {}\n", name);
                Ok(())
            }
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }

    fn target_groups_mgmt<'a>(
        self: &Arc<Self>,
        dg: &mut DeviceGroup,
        mut line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        match line.verb() {
            "create" | "add" => {
                let name = line.name("target group name")?;
                line.end()?;
                if dg
                    .target_groups
                    .iter()
                    .any(|tg| name_eq(&tg.group.name, name))
                {
                    return Err(MgmtError::AlreadyExists(name).into());
                }
                let group = Arc::new(
                    PortGroup {
                        name: cstring(name)?,
                        group_id: AtomicU16::new(0),
                        state: AtomicU8::new(AccessState::Optimized as u8),
                        preferred: AtomicBool::new(false),
                        status: AtomicU8::new(alua::status::NONE),
                    },
                    GFP_KERNEL,
                )?;
                let dir = Dir::new(&dg.target_groups_dir, name)?;
                let ops = Arc::new(
                    AluaOps {
                        scst: self.clone(),
                        dg: Some(CString::try_from(&*dg.name)?),
                        tg: Some(group.clone()),
                    },
                    GFP_KERNEL,
                )?;
                let mut files = KVec::new();
                for (file, attr) in [
                    (c_str!("group_id"), AluaAttr::GroupId),
                    (c_str!("state"), AluaAttr::State),
                    (c_str!("preferred"), AluaAttr::Preferred),
                    (c_str!("mgmt"), AluaAttr::TargetGroupMgmt),
                ] {
                    files.push(
                        File::new(&dir, file, Mode::ReadWrite, ops.clone(), attr)?,
                        GFP_KERNEL,
                    )?;
                }
                dg.target_groups.push(
                    TargetGroup {
                        group,
                        members: KVec::new(),
                        _files: files,
                        dir,
                    },
                    GFP_KERNEL,
                )?;
                dg.republish()?;
                Ok(())
            }
            "del" => {
                let name = line.name("target group name")?;
                line.end()?;
                let i = dg
                    .target_groups
                    .iter()
                    .position(|tg| name_eq(&tg.group.name, name))
                    .ok_or(MgmtError::NoSuchObject(name))?;
                drop(dg.target_groups.swap_remove(i));
                dg.republish()?;
                Ok(())
            }
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }

    /// Device `dev` is being removed: it leaves its device group.
    pub(crate) fn alua_forget_device(&self, dev: &Arc<DeviceState>) {
        let mut groups = self.alua_config.groups.lock();
        for g in groups.iter_mut() {
            if let Some(i) = g.devices.iter().position(|d| Arc::ptr_eq(&d.dev, dev)) {
                drop(g.devices.swap_remove(i));
                dev.publish_alua(None);
            }
        }
    }

    /// Target `target` is being removed: its port leaves every target port
    /// group it is in, as in SCST.
    pub(crate) fn alua_forget_target(&self, target: &Arc<TargetState>) {
        let mut groups = self.alua_config.groups.lock();
        for g in groups.iter_mut() {
            let mut changed = false;
            for tg in g.target_groups.iter_mut() {
                while let Some(i) = tg
                    .members
                    .iter()
                    .position(|m| matches!(&m.port, Port::Local(t) if Arc::ptr_eq(t, target)))
                {
                    drop(tg.members.swap_remove(i));
                    changed = true;
                }
            }
            if changed && g.republish().is_err() {
                pr_warn!(
                    "device group {}: out of memory: its devices keep a removed target\n",
                    &*g.name
                );
            }
        }
    }

    /// Module unload: every device group goes (they hold the core).
    pub(crate) fn alua_clear(&self) {
        let groups = core::mem::replace(&mut *self.alua_config.groups.lock(), KVec::new());
        for g in groups.iter() {
            for d in g.devices.iter() {
                d.dev.publish_alua(None);
            }
        }
        drop(groups);
    }
}

/// `dev` is out of its device group: no ALUA any more, and INQUIRY's
/// TPGS changed.
fn leave_group(dev: &DeviceState) {
    dev.publish_alua(None);
    dev.raise_ua(sense::INQUIRY_DATA_CHANGED, None);
}

fn devices_mgmt<'a>(
    registry: &mut Registry,
    dg: &mut DeviceGroup,
    mut line: Line<'a>,
) -> MgmtOutcome<'a> {
    match line.verb() {
        "add" => {
            let name = line.name("device name")?;
            line.end()?;
            let device = registry
                .devices
                .find(|d| d.name_is(name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            let dev = device.state.clone();
            if dev.in_device_group() {
                return Err(MgmtError::Refused("the device is in a device group already").into());
            }
            let link = Link::new(&dg.devices_dir, name, &device.dir_ref())?;
            let view = dg.view()?;
            dg.devices.push(
                GroupDevice {
                    dev: dev.clone(),
                    _link: link,
                },
                GFP_KERNEL,
            )?;
            dev.publish_alua(Some(view));
            dev.raise_ua(sense::INQUIRY_DATA_CHANGED, None);
            Ok(())
        }
        "del" => {
            let name = line.name("device name")?;
            line.end()?;
            let i = dg
                .devices
                .iter()
                .position(|d| name_eq(&d.dev.name, name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            let gone = dg
                .devices
                .swap_remove(i)
                .ok_or(MgmtError::NoSuchObject(name))?;
            leave_group(&gone.dev);
            Ok(())
        }
        verb => Err(MgmtError::UnknownCommand(verb).into()),
    }
}

fn ports_mgmt<'a>(
    scst: &Arc<Scst>,
    registry: &mut Registry,
    dg: &mut DeviceGroup,
    group: &Arc<PortGroup>,
    mut line: Line<'a>,
) -> MgmtOutcome<'a> {
    let verb = line.verb();
    let name = line.name("target name")?;
    line.end()?;
    match verb {
        "add" => {
            if dg.has_port(name) {
                return Err(MgmtError::AlreadyExists(name).into());
            }
            let local = Scst::find_target(registry, name);
            let tg = dg.target_group(group)?;
            if tg.members.len() >= MAX_GROUP_PORTS {
                return Err(MgmtError::Refused("a target group holds at most 255 targets").into());
            }
            let member = match local {
                Some((state, dir)) => Member {
                    name: cstring(name)?,
                    port: Port::Local(state),
                    _entry: PortEntry::Link {
                        _link: Link::new(&tg.dir, name, &dir)?,
                    },
                },
                None => {
                    let id = Arc::new(AtomicU16::new(0), GFP_KERNEL)?;
                    let d = Dir::new(&tg.dir, name)?;
                    let ops = Arc::new(
                        RemotePortOps {
                            scst: scst.clone(),
                            id: id.clone(),
                        },
                        GFP_KERNEL,
                    )?;
                    let file = File::new(&d, c_str!("rel_tgt_id"), Mode::ReadWrite, ops, ())?;
                    Member {
                        name: cstring(name)?,
                        port: Port::Remote(id),
                        _entry: PortEntry::Remote {
                            _file: file,
                            _dir: d,
                        },
                    }
                }
            };
            tg.members.push(member, GFP_KERNEL)?;
        }
        "del" => {
            let tg = dg.target_group(group)?;
            let i = tg
                .members
                .iter()
                .position(|m| name_eq(&m.name, name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            drop(tg.members.swap_remove(i));
        }
        verb => return Err(MgmtError::UnknownCommand(verb).into()),
    }
    dg.republish()?;
    Ok(())
}

fn set_group_id<'a>(
    dg: &mut DeviceGroup,
    group: &Arc<PortGroup>,
    line: Line<'a>,
) -> MgmtOutcome<'a> {
    let id = parse_ranged("group_id", line.verb(), 0, 0xffff)? as u16;
    line.end()?;
    dg.target_group(group)?;
    if id != 0
        && dg.target_groups.iter().any(|tg| {
            !Arc::ptr_eq(&tg.group, group) && tg.group.group_id.load(Ordering::Relaxed) == id
        })
    {
        return Err(MgmtError::Refused(
            "another target group of the device group has that group_id",
        )
        .into());
    }
    group.group_id.store(id, Ordering::Relaxed);
    dg.states_changed(Some(sense::INQUIRY_DATA_CHANGED), None);
    Ok(())
}

fn set_state<'a>(dg: &mut DeviceGroup, group: &Arc<PortGroup>, line: Line<'a>) -> MgmtOutcome<'a> {
    let text = line.verb();
    let state = AccessState::from_name(text).ok_or(MgmtError::BadValue {
        key: "state",
        value: text,
        expected: "active, nonoptimized, standby, unavailable, offline or transitioning",
    })?;
    line.end()?;
    dg.target_group(group)?;
    if group.state() == state {
        return Ok(());
    }
    group.set_state(state, alua::status::IMPLICIT);
    // Entering transitioning is announced when it ends, as SCST does:
    // initiators retry commands refused meanwhile.
    let ua =
        (state != AccessState::Transitioning).then_some(sense::ASYMMETRIC_ACCESS_STATE_CHANGED);
    dg.states_changed(ua, None);
    pr_info!(
        "device group {}: target group {} is now {}\n",
        &*dg.name,
        &*group.name,
        state.name()
    );
    Ok(())
}

fn set_preferred<'a>(
    dg: &mut DeviceGroup,
    group: &Arc<PortGroup>,
    line: Line<'a>,
) -> MgmtOutcome<'a> {
    let v = parse_bool("preferred", line.verb())?;
    line.end()?;
    dg.target_group(group)?;
    if group.preferred.swap(v, Ordering::Relaxed) != v {
        // Not required by SPC-4, but it ends an initiator's loop of SET
        // TARGET PORT GROUPS retries (as in SCST).
        dg.states_changed(Some(sense::ASYMMETRIC_ACCESS_STATE_CHANGED), None);
    }
    Ok(())
}

/// REPORT TARGET PORT GROUPS for `tgt_dev`'s device, or `None` when the
/// device is not in a device group (its logical unit answers).
pub(super) fn report(
    tgt_dev: &TgtDev,
    cdb: Cdb<'_>,
    out: &mut Out<'_>,
) -> Option<core::result::Result<(), Sense>> {
    let view = tgt_dev.dev.alua.lock().clone()?;
    Some(view.report(cdb, out))
}

/// What the core does with a command of a nexus whose device is in a
/// device group, before reservations and the logical unit see it.
pub(super) enum AluaCheck {
    /// The core answers it now.
    Answer(Response),
    /// REPORT TARGET PORT GROUPS: the core builds the data.
    Report,
    /// SET TARGET PORT GROUPS must run on a worker.
    WouldBlock,
    /// On to the logical unit.
    Pass,
}

/// ALUA's part of a command of `tgt_dev` whose nexus has `view`.
pub(super) fn check(
    tgt_dev: &Arc<TgtDev>,
    view: PortView,
    cdb: Cdb<'_>,
    data: &mut SgList<'_>,
    direction: DataDirection,
    nowait: bool,
    format: impl Fn() -> SenseFormat,
) -> AluaCheck {
    let refusal = view.port.and_then(|(_, state)| state.refusal(cdb));
    match (alua::group_command(cdb), refusal) {
        (_, Some(s)) => AluaCheck::Answer(Response::check_condition(s, format())),
        (Some(GroupCommand::Report), None) => AluaCheck::Report,
        (Some(GroupCommand::Set), None) if !view.explicit => AluaCheck::Answer(
            Response::check_condition(Sense::invalid_cdb_field(1, Some(4)), format()),
        ),
        (Some(GroupCommand::Set), None) if nowait => AluaCheck::WouldBlock,
        (Some(GroupCommand::Set), None) => AluaCheck::Answer(set_target_port_groups(
            tgt_dev,
            cdb,
            data,
            direction,
            format(),
        )),
        (None, None) => AluaCheck::Pass,
    }
}

/// SET TARGET PORT GROUPS, on a worker: every descriptor is checked
/// against the device's groups first, then all take effect together;
/// every other I_T nexus of the group's devices gets ASYMMETRIC ACCESS
/// STATE CHANGED.
fn set_target_port_groups(
    tgt_dev: &Arc<TgtDev>,
    cdb: Cdb<'_>,
    data: &mut SgList<'_>,
    direction: DataDirection,
    format: SenseFormat,
) -> Response {
    let list_len = alua::set_list_len(cdb);
    let params = match parameter_list(data, direction, list_len, alua::MAX_SET_LIST_LEN) {
        Ok(p) if p.len() == list_len => p,
        Ok(_) => return Response::check_condition(sense::PARAMETER_LIST_LENGTH_ERROR, format),
        Err(s) => return Response::check_condition(s, format),
    };

    let dev = &tgt_dev.dev;
    let groups = dev.alua_config.groups.lock();
    let Some(dg) = groups
        .iter()
        .find(|g| g.devices.iter().any(|d| Arc::ptr_eq(&d.dev, dev)))
    else {
        // Left its device group since the command started.
        return Response::check_condition(Sense::invalid_cdb_field(1, Some(4)), format);
    };
    let mut changes: KVec<(Arc<PortGroup>, AccessState)> = KVec::new();
    let parsed = alua::parse_set_list(&params, |d| {
        let field = Sense::invalid_param_field(d.offset + 2, None);
        let group = dg
            .target_groups
            .iter()
            .map(|tg| &tg.group)
            .find(|g| d.group_id != 0 && g.group_id.load(Ordering::Relaxed) == d.group_id)
            .ok_or(field)?;
        if changes.iter().any(|(g, _)| Arc::ptr_eq(g, group)) {
            return Err(field);
        }
        if group.state() == AccessState::Transitioning {
            return Err(sense::ALUA_TRANSITIONING);
        }
        changes
            .push((group.clone(), d.state), GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)
    });
    if let Err(s) = parsed {
        return Response::check_condition(s, format);
    }
    let mut changed = false;
    for (group, state) in changes.iter() {
        changed |= group.state() != *state;
        group.set_state(*state, alua::status::BY_STPG);
        pr_peer!(
            pr_info,
            "device group {}: SET TARGET PORT GROUPS made target group {} {}\n",
            &*dg.name,
            &*group.name,
            state.name()
        );
    }
    if changed {
        dg.states_changed(Some(sense::ASYMMETRIC_ACCESS_STATE_CHANGED), Some(tgt_dev));
    }
    Response::status(status::GOOD)
}
