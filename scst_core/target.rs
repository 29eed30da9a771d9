// SPDX-License-Identifier: GPL-2.0

//! Target drivers, their targets, LUN mapping, initiator groups and
//! sessions: `targets/<driver>/<target>/{luns,ini_groups,sessions}`.
//!
//! All configuration changes run under the registry lock; sessions see the
//! result through [`Session::set_luns`], which the command path reads under
//! the session's own spinlock only.

use super::cdb::MAX_LUN;
use super::device::{key_mark, Device, DeviceState};
use super::mgmt::{
    collect_params, parse_bool, parse_ranged, wildcard_match, Line, MgmtError, TextBuf,
};
use super::pr::TransportId;
use super::session::{LunView, Session, TargetState};
use super::slots::Slots;
use super::{cstring, MgmtOutcome, Registry, Scst};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::sysfs::{Dir, DirRef, File, Link, Mode, SysfsBuf, SysfsOps};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, fmt,
    prelude::*,
    str::{CStr, CString},
    sync::Arc,
};

/// A target driver (scst_local, iscsi, ...): owns `targets/<name>/mgmt`.
pub(crate) trait TargetDriver: Send + Sync + 'static {
    /// The driver's name, its directory under `targets/`.
    fn name(&self) -> &'static str;

    /// Usage text shown when `targets/<name>/mgmt` is read.
    fn mgmt_help(&self) -> &'static str;

    /// Carries out a line written to `targets/<name>/mgmt`, through the
    /// core's target and session operations.
    fn mgmt<'a>(
        &self,
        scst: &Arc<Scst>,
        registry: &mut Registry,
        line: Line<'a>,
    ) -> MgmtOutcome<'a>;

    /// Attribute files of `targets/<name>/` besides `mgmt` (e.g. iSCSI's
    /// `enabled`).
    fn attributes(&self) -> &'static [&'static CStr] {
        &[]
    }

    /// Shows attribute `index` of [`Self::attributes`].
    fn show_attribute(&self, _index: usize, _out: &mut SysfsBuf) {}

    /// Writes attribute `index` of [`Self::attributes`].
    fn store_attribute(&self, _scst: &Arc<Scst>, _index: usize, _value: &str) -> Result {
        Err(EACCES)
    }

    /// Whether attribute file `name` (of the driver or of a target) holds
    /// secrets: only root may read it.
    fn attribute_is_private(&self, _name: &CStr) -> bool {
        false
    }

    /// Attribute files the driver adds to each of its targets'
    /// directories (e.g. iSCSI's negotiation parameters).
    fn target_attributes(&self) -> &'static [&'static CStr] {
        &[]
    }

    /// Shows attribute `index` of [`Self::target_attributes`] of `target`.
    fn show_target_attribute(&self, _target: &CStr, _index: usize, _out: &mut SysfsBuf) {}

    /// Writes attribute `index` of [`Self::target_attributes`] of `target`;
    /// runs as a management command (its failure lands in
    /// `last_sysfs_mgmt_res`).
    fn store_target_attribute<'a>(
        &self,
        _target: &CStr,
        _index: usize,
        _value: &'a str,
    ) -> MgmtOutcome<'a> {
        Err(EACCES.into())
    }
}

/// Read-only attributes a driver adds to a session's directory (e.g. the
/// negotiated iSCSI parameters). Kept apart from [`SessionHandle`] so that
/// an open file never delays the handle's drop.
pub(crate) trait SessionAttributes: Send + Sync {
    /// The files' names.
    fn names(&self) -> &'static [&'static CStr];

    /// Shows file `index` of [`Self::names`].
    fn show(&self, index: usize, out: &mut SysfsBuf);
}

/// Serves the files of a [`SessionAttributes`].
struct SessionAttributesOps(Arc<dyn SessionAttributes>);

impl SysfsOps for SessionAttributesOps {
    type Attr = usize;

    fn show(&self, index: usize, out: &mut SysfsBuf) -> Result {
        self.0.show(index, out);
        Ok(())
    }
}

/// The driver side of a session, dropped (first) when the session ends.
pub(crate) trait SessionHandle: Send + Sync {
    /// A sysfs directory `sessions/<S>/` links to, with the link's name.
    fn sysfs_link(&self) -> Option<(&'static str, DirRef)> {
        None
    }

    /// Files to add to the session's directory.
    fn attributes(&self) -> Option<Arc<dyn SessionAttributes>> {
        None
    }

    /// The session's LUN inventory changed; every LUN of it now has a
    /// REPORTED LUNS DATA HAS CHANGED unit attention, `lun` is one of them.
    /// A transport with asynchronous event reporting (iSCSI's Async
    /// Message) tells the initiator at once. Called under the registry
    /// lock: must not block.
    fn luns_changed(&self, _lun: u64) {}
}

pub(crate) struct DriverEntry {
    pub(crate) driver: Arc<dyn TargetDriver>,
    targets: KVec<Target>,
    _files: KVec<File<DriverOps>>,
    dir: Dir,
}

struct LunEntry {
    lun: u64,
    dev: Arc<DeviceState>,
    read_only: bool,
    _export_link: Link,
    _device_link: Link,
    _read_only_file: File<TextAttr>,
    _dir: Dir,
}

struct InitiatorEntry {
    name: CString,
    _file: File<TextAttr>,
}

struct Group {
    name: CString,
    luns: KVec<LunEntry>,
    initiators: KVec<InitiatorEntry>,
    _files: KVec<File<TargetOps>>,
    luns_dir: Dir,
    initiators_dir: Dir,
    _dir: Dir,
}

struct SessionEntry {
    session: Arc<Session>,
    /// The directory's name under `sessions/`.
    dir_name: CString,
    /// Dropped first: the driver stops submitting before the LUNs go.
    handle: Option<Arc<dyn SessionHandle>>,
    _link: Option<Link>,
    _driver_files: KVec<File<SessionAttributesOps>>,
    _files: KVec<File<Session>>,
    _dir: Dir,
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        drop(self.handle.take());
        self.session.clear_luns();
    }
}

pub(crate) struct Target {
    name: CString,
    state: Arc<TargetState>,
    // Sessions first: they go before the LUNs and groups they use.
    sessions: KVec<SessionEntry>,
    luns: KVec<LunEntry>,
    groups: KVec<Group>,
    _files: KVec<File<TargetOps>>,
    luns_dir: Dir,
    groups_dir: Dir,
    sessions_dir: Dir,
    _dir: Dir,
}

/// The mode of a driver's attribute file.
fn mode_of(driver: &dyn TargetDriver, name: &CStr) -> Mode {
    if driver.attribute_is_private(name) {
        Mode::Private
    } else {
        Mode::ReadWrite
    }
}

/// The entry of target driver `driver`.
fn driver_mut<'r>(
    drivers: &'r mut Slots<DriverEntry>,
    driver: &str,
) -> Option<&'r mut DriverEntry> {
    drivers.iter_mut().find(|d| d.driver.name() == driver)
}

/// Target `name` of `driver`.
fn target_mut<'r>(
    drivers: &'r mut Slots<DriverEntry>,
    driver: &str,
    name: &[u8],
) -> Option<&'r mut Target> {
    driver_mut(drivers, driver)?
        .targets
        .iter_mut()
        .find(|t| t.name.as_bytes() == name)
}

fn name_eq(c: &CString, s: &str) -> bool {
    c.as_bytes() == s.as_bytes()
}

impl Target {
    /// Creates session `dir_name` (under `sessions/`) of `initiator`.
    fn open_session(
        &mut self,
        initiator: &str,
        port: TransportId,
        dir_name: &str,
        target: &str,
        make: impl FnOnce(Arc<Session>) -> Result<Arc<dyn SessionHandle>>,
    ) -> Result<Arc<Session>> {
        let session = Session::new(initiator, port, self.state.clone())?;
        let dir = Dir::new(&self.sessions_dir, dir_name)?;
        let mut files = KVec::new();
        for (file, attr) in [
            (c_str!("initiator_name"), SessionAttr::InitiatorName),
            (c_str!("commands"), SessionAttr::Commands),
            (c_str!("active_commands"), SessionAttr::ActiveCommands),
            (c_str!("task_set_full"), SessionAttr::TaskSetFull),
            (c_str!("busy"), SessionAttr::Busy),
        ] {
            files.push(
                File::new(&dir, file, Mode::ReadOnly, session.clone(), attr)?,
                GFP_KERNEL,
            )?;
        }
        let views = self.views_for(&session.initiator)?;
        session.set_luns(&views, true)?;
        let mut entry = SessionEntry {
            session: session.clone(),
            handle: None,
            _link: None,
            _driver_files: KVec::new(),
            _files: files,
            dir_name: cstring(dir_name)?,
            _dir: dir,
        };
        let session_ret = session.clone();
        let handle = make(session)?;
        if let Some((link_name, to)) = handle.sysfs_link() {
            entry._link = Some(Link::new(&entry._dir, link_name, &to)?);
        }
        if let Some(attrs) = handle.attributes() {
            let ops = Arc::new(SessionAttributesOps(attrs.clone()), GFP_KERNEL)?;
            for (i, name) in attrs.names().iter().enumerate() {
                entry._driver_files.push(
                    File::new(&entry._dir, name, Mode::ReadOnly, ops.clone(), i)?,
                    GFP_KERNEL,
                )?;
            }
        }
        entry.handle = Some(handle);
        self.sessions.push(entry, GFP_KERNEL)?;
        pr_peer!(pr_info, "added session {} to target {}\n", dir_name, target);
        Ok(session_ret)
    }
}

impl Target {
    /// The LUNs `initiator` sees: its group's, or the target's default set.
    fn views_for(&self, initiator: &CString) -> Result<KVec<LunView>> {
        let name = initiator.to_str().unwrap_or("");
        let luns = self
            .groups
            .iter()
            .find(|g| {
                g.initiators
                    .iter()
                    .any(|i| wildcard_match(i.name.to_str().unwrap_or(""), name))
            })
            .map_or(&self.luns, |g| &g.luns);
        let mut views = KVec::with_capacity(luns.len(), GFP_KERNEL)?;
        for l in luns.iter() {
            views.push(
                LunView {
                    lun: l.lun,
                    dev: l.dev.clone(),
                    read_only: l.read_only,
                },
                GFP_KERNEL,
            )?;
        }
        Ok(views)
    }

    /// Pushes the current LUN mapping to every session.
    fn update_sessions(&self) -> Result {
        for s in self.sessions.iter() {
            let views = self.views_for(&s.session.initiator)?;
            if let Some(lun) = s.session.set_luns(&views, false)? {
                if let Some(h) = &s.handle {
                    h.luns_changed(lun);
                }
            }
        }
        Ok(())
    }
}

/// Which LUN table a `luns/mgmt` file edits.
#[derive(Clone, Copy)]
enum LunTable {
    Default,
    Group,
}

#[derive(Clone, Copy)]
enum TargetAttr {
    Enabled,
    RelTgtId,
    LunsMgmt(LunTable),
    GroupsMgmt,
    InitiatorsMgmt,
    /// One of the driver's [`TargetDriver::target_attributes`].
    Driver(usize),
}

/// Serves the files of a target (and, with `group`, of one of its groups).
struct TargetOps {
    scst: Arc<Scst>,
    driver: &'static str,
    /// The driver, for its own target attributes.
    driver_ops: Option<Arc<dyn TargetDriver>>,
    target: CString,
    group: Option<CString>,
    state: Arc<TargetState>,
}

const LUNS_HELP: &str = "Usage: echo \"add H:C:I:L lun [parameters]\" >mgmt\n\
     \x20      echo \"add VNAME lun [parameters]\" >mgmt\n\
     \x20      echo \"del lun\" >mgmt\n\
     \x20      echo \"replace H:C:I:L lun [parameters]\" >mgmt\n\
     \x20      echo \"replace VNAME lun [parameters]\" >mgmt\n\
     \x20      echo \"clear\" >mgmt\n\
     \n\
     where parameters are one or more param_name=value pairs separated by ';'\n\
     \n\
     The following parameters available: read_only.\n";

const GROUPS_HELP: &str = "Usage: echo \"create GROUP_NAME\" >mgmt\n\
     \x20      echo \"del GROUP_NAME\" >mgmt\n";

const INITIATORS_HELP: &str = "Usage: echo \"add INITIATOR_NAME\" >mgmt\n\
     \x20      echo \"del INITIATOR_NAME\" >mgmt\n\
     \x20      echo \"move INITIATOR_NAME DEST_GROUP_NAME\" >mgmt\n\
     \x20      echo \"clear\" >mgmt\n";

impl SysfsOps for TargetOps {
    type Attr = TargetAttr;

    fn show(&self, attr: TargetAttr, out: &mut SysfsBuf) -> Result {
        let _ = match attr {
            TargetAttr::Enabled => writeln!(
                out,
                "{}",
                u8::from(self.state.enabled.load(Ordering::Relaxed))
            ),
            TargetAttr::RelTgtId => {
                // The identifier initiators see in VPD page 83h: kept
                // with the configuration so that a restore keeps it.
                let _ = writeln!(out, "{}", self.state.rel_tgt_id.load(Ordering::Relaxed));
                key_mark(out, true);
                Ok(())
            }
            TargetAttr::LunsMgmt(_) => out.write_str(LUNS_HELP),
            TargetAttr::GroupsMgmt => out.write_str(GROUPS_HELP),
            TargetAttr::InitiatorsMgmt => out.write_str(INITIATORS_HELP),
            TargetAttr::Driver(i) => {
                if let Some(d) = &self.driver_ops {
                    d.show_target_attribute(&self.target, i, out);
                }
                Ok(())
            }
        };
        Ok(())
    }

    fn store(&self, attr: TargetAttr, input: &[u8]) -> Result {
        if let (TargetAttr::Driver(i), Some(d)) = (attr, &self.driver_ops) {
            let name = d
                .target_attributes()
                .get(i)
                .map_or("?", |n| n.to_str().unwrap_or("?"));
            return self.scst.run_mgmt(name, input, |registry, _line| {
                // The target must still exist; the value is the whole text
                // (it may hold spaces, e.g. `CRC32C, None`).
                target_mut(&mut registry.drivers, self.driver, self.target.as_bytes())
                    .ok_or(MgmtError::Refused("the target is being removed"))?;
                let value = core::str::from_utf8(input).map_err(|_| MgmtError::NotText)?;
                d.store_target_attribute(&self.target, i, value.trim())
            });
        }
        let file = match attr {
            TargetAttr::Enabled => "enabled",
            TargetAttr::RelTgtId => "rel_tgt_id",
            TargetAttr::LunsMgmt(_) => "luns/mgmt",
            TargetAttr::GroupsMgmt => "ini_groups/mgmt",
            TargetAttr::InitiatorsMgmt => "initiators/mgmt",
            TargetAttr::Driver(_) => return Err(EACCES),
        };
        self.scst.run_mgmt(file, input, |registry, line| {
            let Registry {
                devices, drivers, ..
            } = registry;
            let target = target_mut(drivers, self.driver, self.target.as_bytes())
                .ok_or(MgmtError::Refused("the target is being removed"))?;
            match attr {
                TargetAttr::Enabled => {
                    let v = parse_bool("enabled", line.verb())?;
                    line.end()?;
                    target.state.enabled.store(v, Ordering::Relaxed);
                    Ok(())
                }
                TargetAttr::RelTgtId => {
                    let v = parse_ranged("rel_tgt_id", line.verb(), 1, 0xffff)?;
                    line.end()?;
                    target.state.rel_tgt_id.store(v as u16, Ordering::Relaxed);
                    Ok(())
                }
                TargetAttr::LunsMgmt(table) => {
                    let group = match (table, &self.group) {
                        (LunTable::Group, Some(g)) => Some(g),
                        _ => None,
                    };
                    luns_mgmt(&self.scst, devices, target, group, line)
                }
                TargetAttr::GroupsMgmt => groups_mgmt(&self.scst, target, self.driver, line),
                TargetAttr::InitiatorsMgmt => {
                    let group = self.group.as_ref().ok_or(MgmtError::Refused("no group"))?;
                    initiators_mgmt(target, group, line)
                }
                TargetAttr::Driver(_) => Err(EACCES.into()),
            }
        })
    }
}

/// A read-only file showing fixed text: a LUN's `read_only`, an initiator
/// entry's name.
struct TextAttr {
    text: CString,
    /// The text is part of the configuration (a LUN made read-only).
    key: bool,
}

impl SysfsOps for TextAttr {
    type Attr = ();

    fn show(&self, (): (), out: &mut SysfsBuf) -> Result {
        let _ = writeln!(out, "{}", &*self.text);
        key_mark(out, self.key);
        Ok(())
    }
}

fn parse_lun<'a>(text: &'a str) -> core::result::Result<u64, MgmtError<'a>> {
    parse_ranged("LUN", text, 0, MAX_LUN)
}

/// The LUN table a `luns/mgmt` file edits and its directory.
fn lun_table<'t, 'a>(
    target: &'t mut Target,
    group: Option<&CString>,
) -> core::result::Result<(&'t mut KVec<LunEntry>, DirRef), MgmtError<'a>> {
    match group {
        None => Ok((&mut target.luns, target.luns_dir.to_ref())),
        Some(g) => target
            .groups
            .iter_mut()
            .find(|x| x.name.as_bytes() == g.as_bytes())
            .map(|x| (&mut x.luns, x.luns_dir.to_ref()))
            .ok_or(MgmtError::Refused("the group is being removed")),
    }
}

fn remove_lun(table: &mut KVec<LunEntry>, lun: u64) -> bool {
    match table.iter().position(|l| l.lun == lun) {
        Some(i) => table.swap_remove(i).is_some(),
        None => false,
    }
}

fn luns_mgmt<'a>(
    scst: &Scst,
    devices: &Slots<Device>,
    target: &mut Target,
    group: Option<&CString>,
    mut line: Line<'a>,
) -> MgmtOutcome<'a> {
    match line.verb() {
        verb @ ("add" | "replace") => {
            let dev_name = line.name("device name")?;
            let lun_text = line.word("LUN")?;
            let lun = parse_lun(lun_text)?;
            let mut values = [None; 1];
            collect_params(line.params(), &["read_only"], &mut values)?;
            let read_only = match values[0] {
                Some(v) => parse_bool("read_only", v)?,
                None => false,
            };
            let device = devices
                .find(|d| d.name_is(dev_name))
                .ok_or(MgmtError::NoSuchObject(dev_name))?;
            let (table, luns_dir) = lun_table(target, group)?;
            let exists = table.iter().any(|l| l.lun == lun);
            if verb == "add" && exists {
                return Err(MgmtError::AlreadyExists(lun_text).into());
            }
            if verb == "replace" && !exists {
                return Err(MgmtError::NoSuchObject(lun_text).into());
            }
            if verb == "replace" {
                remove_lun(table, lun);
            }
            let mut dir_name = TextBuf::<24>::new();
            let _ = write!(dir_name, "{lun}");
            let dir = Dir::new(&luns_dir, dir_name.as_str())?;
            let mut export_name = TextBuf::<24>::new();
            let _ = write!(
                export_name,
                "export{}",
                scst.next_export.fetch_add(1, Ordering::Relaxed)
            );
            let entry = LunEntry {
                lun,
                dev: device.state.clone(),
                read_only,
                _export_link: Link::new(&device.exported_dir(), export_name.as_str(), &dir)?,
                _device_link: Link::new(&dir, "device", &device.dir_ref())?,
                _read_only_file: File::new(
                    &dir,
                    c_str!("read_only"),
                    Mode::ReadOnly,
                    Arc::new(
                        TextAttr {
                            text: cstring(if read_only { "1" } else { "0" })?,
                            key: read_only,
                        },
                        GFP_KERNEL,
                    )?,
                    (),
                )?,
                _dir: dir,
            };
            table.push(entry, GFP_KERNEL)?;
        }
        "del" => {
            let lun_text = line.word("LUN")?;
            let lun = parse_lun(lun_text)?;
            line.end()?;
            let (table, _) = lun_table(target, group)?;
            if !remove_lun(table, lun) {
                return Err(MgmtError::NoSuchObject(lun_text).into());
            }
        }
        "clear" => {
            line.end()?;
            let (table, _) = lun_table(target, group)?;
            table.clear();
        }
        verb => return Err(MgmtError::UnknownCommand(verb).into()),
    }
    target.update_sessions()?;
    Ok(())
}

fn groups_mgmt<'a>(
    scst: &Arc<Scst>,
    target: &mut Target,
    driver: &'static str,
    mut line: Line<'a>,
) -> MgmtOutcome<'a> {
    match line.verb() {
        "create" => {
            let name = line.name("group name")?;
            line.end()?;
            if target.groups.iter().any(|g| name_eq(&g.name, name)) {
                return Err(MgmtError::AlreadyExists(name).into());
            }
            let dir = Dir::new(&target.groups_dir, name)?;
            let luns_dir = Dir::new(&dir, "luns")?;
            let initiators_dir = Dir::new(&dir, "initiators")?;
            let ops = Arc::new(
                TargetOps {
                    scst: scst.clone(),
                    driver,
                    driver_ops: None,
                    target: CString::try_from(&*target.name)?,
                    group: Some(cstring(name)?),
                    state: target.state.clone(),
                },
                GFP_KERNEL,
            )?;
            let mut files = KVec::new();
            files.push(
                File::new(
                    &luns_dir,
                    c_str!("mgmt"),
                    Mode::ReadWrite,
                    ops.clone(),
                    TargetAttr::LunsMgmt(LunTable::Group),
                )?,
                GFP_KERNEL,
            )?;
            files.push(
                File::new(
                    &initiators_dir,
                    c_str!("mgmt"),
                    Mode::ReadWrite,
                    ops,
                    TargetAttr::InitiatorsMgmt,
                )?,
                GFP_KERNEL,
            )?;
            target.groups.push(
                Group {
                    name: cstring(name)?,
                    luns: KVec::new(),
                    initiators: KVec::new(),
                    _files: files,
                    luns_dir,
                    initiators_dir,
                    _dir: dir,
                },
                GFP_KERNEL,
            )?;
            Ok(())
        }
        "del" => {
            let name = line.name("group name")?;
            line.end()?;
            let i = target
                .groups
                .iter()
                .position(|g| name_eq(&g.name, name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            drop(target.groups.swap_remove(i));
            target.update_sessions()?;
            Ok(())
        }
        verb => Err(MgmtError::UnknownCommand(verb).into()),
    }
}

fn group_mut<'t, 'a>(
    target: &'t mut Target,
    name: &[u8],
) -> core::result::Result<&'t mut Group, MgmtError<'a>> {
    target
        .groups
        .iter_mut()
        .find(|g| g.name.as_bytes() == name)
        .ok_or(MgmtError::Refused("the group is being removed"))
}

fn new_initiator(dir: &DirRef, name: &str) -> Result<InitiatorEntry> {
    let cname = cstring(name)?;
    let file = File::new(
        dir,
        &cname,
        Mode::ReadOnly,
        Arc::new(
            TextAttr {
                text: cstring(name)?,
                key: false,
            },
            GFP_KERNEL,
        )?,
        (),
    )?;
    Ok(InitiatorEntry {
        name: cname,
        _file: file,
    })
}

fn initiators_mgmt<'a>(
    target: &mut Target,
    group: &CString,
    mut line: Line<'a>,
) -> MgmtOutcome<'a> {
    match line.verb() {
        "add" => {
            let name = line.name("initiator name")?;
            line.end()?;
            if target
                .groups
                .iter()
                .any(|g| g.initiators.iter().any(|i| name_eq(&i.name, name)))
            {
                return Err(MgmtError::AlreadyExists(name).into());
            }
            let g = group_mut(target, group.as_bytes())?;
            let entry = new_initiator(&g.initiators_dir, name)?;
            g.initiators.push(entry, GFP_KERNEL)?;
        }
        "del" => {
            let name = line.name("initiator name")?;
            line.end()?;
            let g = group_mut(target, group.as_bytes())?;
            let i = g
                .initiators
                .iter()
                .position(|x| name_eq(&x.name, name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            g.initiators.swap_remove(i);
        }
        "move" => {
            let name = line.name("initiator name")?;
            let dest = line.name("destination group")?;
            line.end()?;
            if !target.groups.iter().any(|g| name_eq(&g.name, dest)) {
                return Err(MgmtError::NoSuchObject(dest).into());
            }
            if group.as_bytes() == dest.as_bytes() {
                return Ok(());
            }
            let g = group_mut(target, group.as_bytes())?;
            let i = g
                .initiators
                .iter()
                .position(|x| name_eq(&x.name, name))
                .ok_or(MgmtError::NoSuchObject(name))?;
            let d = group_mut(target, dest.as_bytes())?;
            let entry = new_initiator(&d.initiators_dir, name)?;
            d.initiators.push(entry, GFP_KERNEL)?;
            group_mut(target, group.as_bytes())?
                .initiators
                .swap_remove(i);
        }
        "clear" => {
            line.end()?;
            group_mut(target, group.as_bytes())?.initiators.clear();
        }
        verb => return Err(MgmtError::UnknownCommand(verb).into()),
    }
    target.update_sessions()?;
    Ok(())
}

/// Serves `targets/<driver>/mgmt`.
struct DriverOps {
    scst: Arc<Scst>,
    driver: Arc<dyn TargetDriver>,
}

/// The files of `targets/<driver>/`.
#[derive(Clone, Copy)]
enum DriverAttr {
    Mgmt,
    Other(usize),
}

impl SysfsOps for DriverOps {
    type Attr = DriverAttr;

    fn show(&self, attr: DriverAttr, out: &mut SysfsBuf) -> Result {
        match attr {
            DriverAttr::Mgmt => {
                let _ = out.write_str(self.driver.mgmt_help());
                // What each target has besides the core's files, so that
                // a tool can check a configuration before any target
                // exists (SCST's help lists attributes the same way).
                let names = self.driver.target_attributes();
                if !names.is_empty() {
                    let _ = out.write_str("\nThe following target attributes available:");
                    for (i, n) in names.iter().enumerate() {
                        let sep = if i == 0 { " " } else { ", " };
                        let _ = write!(out, "{sep}{}", n.to_str().unwrap_or("?"));
                    }
                    let _ = out.write_str("\n");
                }
            }
            DriverAttr::Other(i) => self.driver.show_attribute(i, out),
        }
        Ok(())
    }

    fn store(&self, attr: DriverAttr, input: &[u8]) -> Result {
        match attr {
            DriverAttr::Mgmt => self
                .scst
                .run_mgmt(self.driver.name(), input, |registry, line| {
                    self.driver.mgmt(&self.scst, registry, line)
                }),
            DriverAttr::Other(i) => {
                let text = core::str::from_utf8(input).map_err(|_| EINVAL)?.trim();
                self.driver.store_attribute(&self.scst, i, text)
            }
        }
    }
}

/// Session attributes.
#[derive(Clone, Copy)]
pub(crate) enum SessionAttr {
    InitiatorName,
    Commands,
    ActiveCommands,
    TaskSetFull,
    Busy,
}

impl SysfsOps for Session {
    type Attr = SessionAttr;

    fn show(&self, attr: SessionAttr, out: &mut SysfsBuf) -> Result {
        let _ = match attr {
            SessionAttr::InitiatorName => writeln!(out, "{}", &*self.initiator),
            SessionAttr::Commands => writeln!(out, "{}", self.commands.load(Ordering::Relaxed)),
            SessionAttr::ActiveCommands => writeln!(out, "{}", self.active_commands()),
            SessionAttr::TaskSetFull => {
                writeln!(out, "{}", self.task_set_full.load(Ordering::Relaxed))
            }
            SessionAttr::Busy => writeln!(out, "{}", self.busy.load(Ordering::Relaxed)),
        };
        Ok(())
    }
}

impl Scst {
    /// Registers a target driver: creates `targets/<name>/mgmt`.
    pub(crate) fn register_target_driver(
        self: &Arc<Self>,
        driver: Arc<dyn TargetDriver>,
    ) -> Result {
        let mut registry = self.registry.lock();
        if registry
            .drivers
            .iter()
            .any(|d| d.driver.name() == driver.name())
        {
            return Err(EEXIST);
        }
        let dir = Dir::new(&self.targets_dir, driver.name())?;
        let ops = Arc::new(
            DriverOps {
                scst: self.clone(),
                driver: driver.clone(),
            },
            GFP_KERNEL,
        )?;
        let mut files = KVec::new();
        files.push(
            File::new(
                &dir,
                c_str!("mgmt"),
                Mode::ReadWrite,
                ops.clone(),
                DriverAttr::Mgmt,
            )?,
            GFP_KERNEL,
        )?;
        for (i, name) in driver.attributes().iter().enumerate() {
            files.push(
                File::new(
                    &dir,
                    name,
                    mode_of(&*driver, name),
                    ops.clone(),
                    DriverAttr::Other(i),
                )?,
                GFP_KERNEL,
            )?;
        }
        registry.drivers.insert(DriverEntry {
            driver,
            targets: KVec::new(),
            _files: files,
            dir,
        })
    }

    /// Unregisters a driver that leaves before the core (one in a module of
    /// its own): its targets go with their sessions, then `targets/<name>`.
    pub(crate) fn unregister_target_driver(&self, name: &str) {
        let mut registry = self.registry.lock();
        let Some(mut entry) = registry.drivers.remove(|d| d.driver.name() == name) else {
            return;
        };
        while let Some(target) = entry.targets.pop() {
            let state = target.state.clone();
            pr_info!("{}: removed target {}\n", name, &*target.name);
            drop(target);
            self.alua_forget_target(&state);
        }
    }

    /// Creates target `name` of `driver`, with its `luns/`, `ini_groups/`
    /// and `sessions/` directories.
    pub(crate) fn add_target<'a>(
        self: &Arc<Self>,
        registry: &mut Registry,
        driver: &'static str,
        name: &'a str,
    ) -> MgmtOutcome<'a> {
        let entry = driver_mut(&mut registry.drivers, driver).ok_or(ENODEV)?;
        if entry.targets.iter().any(|t| name_eq(&t.name, name)) {
            return Err(MgmtError::AlreadyExists(name).into());
        }
        let rel_tgt_id = self.next_rel_tgt_id.fetch_add(1, Ordering::Relaxed).max(1);
        let state = Arc::new(
            TargetState {
                name: super::cstring(name)?,
                rel_tgt_id: AtomicU16::new(rel_tgt_id),
                enabled: AtomicBool::new(true),
            },
            GFP_KERNEL,
        )?;
        let dir = Dir::new(&entry.dir, name)?;
        let luns_dir = Dir::new(&dir, "luns")?;
        let groups_dir = Dir::new(&dir, "ini_groups")?;
        let sessions_dir = Dir::new(&dir, "sessions")?;
        let ops = Arc::new(
            TargetOps {
                scst: self.clone(),
                driver,
                driver_ops: Some(entry.driver.clone()),
                target: cstring(name)?,
                group: None,
                state: state.clone(),
            },
            GFP_KERNEL,
        )?;
        let mut files = KVec::new();
        for (d, file, mode, attr) in [
            (
                &dir,
                c_str!("enabled"),
                Mode::ReadWrite,
                TargetAttr::Enabled,
            ),
            (
                &dir,
                c_str!("rel_tgt_id"),
                Mode::ReadWrite,
                TargetAttr::RelTgtId,
            ),
            (
                &luns_dir,
                c_str!("mgmt"),
                Mode::ReadWrite,
                TargetAttr::LunsMgmt(LunTable::Default),
            ),
            (
                &groups_dir,
                c_str!("mgmt"),
                Mode::ReadWrite,
                TargetAttr::GroupsMgmt,
            ),
        ] {
            files.push(File::new(d, file, mode, ops.clone(), attr)?, GFP_KERNEL)?;
        }
        for (i, file) in entry.driver.target_attributes().iter().enumerate() {
            files.push(
                File::new(
                    &dir,
                    file,
                    mode_of(&*entry.driver, file),
                    ops.clone(),
                    TargetAttr::Driver(i),
                )?,
                GFP_KERNEL,
            )?;
        }
        entry.targets.push(
            Target {
                name: cstring(name)?,
                state,
                sessions: KVec::new(),
                luns: KVec::new(),
                groups: KVec::new(),
                _files: files,
                luns_dir,
                groups_dir,
                sessions_dir,
                _dir: dir,
            },
            GFP_KERNEL,
        )?;
        pr_info!("{}: added target {}\n", driver, name);
        Ok(())
    }

    /// Removes a target with its sessions, LUNs and groups.
    pub(crate) fn del_target<'a>(
        &self,
        registry: &mut Registry,
        driver: &str,
        name: &'a str,
    ) -> MgmtOutcome<'a> {
        let entry = driver_mut(&mut registry.drivers, driver).ok_or(ENODEV)?;
        let i = entry
            .targets
            .iter()
            .position(|t| name_eq(&t.name, name))
            .ok_or(MgmtError::NoSuchObject(name))?;
        let target = entry.targets.swap_remove(i);
        let state = target.as_ref().map(|t| t.state.clone());
        drop(target);
        if let Some(state) = state {
            self.alua_forget_target(&state);
        }
        pr_info!("{}: removed target {}\n", driver, name);
        Ok(())
    }

    /// The target named `name`, of whichever driver, with its directory.
    pub(crate) fn find_target(
        registry: &Registry,
        name: &str,
    ) -> Option<(Arc<TargetState>, DirRef)> {
        registry.drivers.iter().find_map(|d| {
            d.targets
                .iter()
                .find(|t| name_eq(&t.name, name))
                .map(|t| (t.state.clone(), t._dir.to_ref()))
        })
    }

    /// Opens a session of `initiator` on a target; `make` builds the
    /// driver's side (e.g. a SCSI host) once the session exists.
    pub(crate) fn add_session<'a>(
        self: &Arc<Self>,
        registry: &mut Registry,
        driver: &str,
        target: &'a str,
        initiator: &'a str,
        make: impl FnOnce(Arc<Session>) -> Result<Arc<dyn SessionHandle>>,
    ) -> MgmtOutcome<'a> {
        let t = target_mut(&mut registry.drivers, driver, target.as_bytes())
            .ok_or(MgmtError::NoSuchObject(target))?;
        if t.sessions
            .iter()
            .any(|s| name_eq(&s.session.initiator, initiator))
        {
            return Err(MgmtError::AlreadyExists(initiator).into());
        }
        let port = TransportId::named(initiator.as_bytes());
        t.open_session(initiator, port, initiator, target, make)?;
        Ok(())
    }

    /// Opens a session for a network initiator, which may hold several
    /// sessions on one target: the directory is `sessions/<initiator>`,
    /// or `<initiator>_N` for the N-th further one. `port` is its
    /// initiator port's TransportID.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_network_session(
        self: &Arc<Self>,
        registry: &mut Registry,
        driver: &str,
        target: &str,
        initiator: &str,
        port: TransportId,
        make: impl FnOnce(Arc<Session>) -> Result<Arc<dyn SessionHandle>>,
    ) -> Result<Arc<Session>> {
        let t = target_mut(&mut registry.drivers, driver, target.as_bytes()).ok_or(ENOENT)?;
        let mut dir_name = CString::try_from_fmt(fmt!("{}", initiator))?;
        let mut n = 1u32;
        while t
            .sessions
            .iter()
            .any(|s| s.dir_name.as_bytes() == dir_name.as_bytes())
        {
            dir_name = CString::try_from_fmt(fmt!("{}_{}", initiator, n))?;
            n += 1;
        }
        let name = dir_name.to_str().map_err(|_| EINVAL)?;
        t.open_session(initiator, port, name, target, make)
    }

    /// Closes `session` if it is still open (a network session ending on
    /// its own; a racing `del_target` may have closed it already).
    pub(crate) fn remove_session(registry: &mut Registry, driver: &str, session: &Arc<Session>) {
        let Some(entry) = driver_mut(&mut registry.drivers, driver) else {
            return;
        };
        for t in entry.targets.iter_mut() {
            if let Some(i) = t
                .sessions
                .iter()
                .position(|s| Arc::ptr_eq(&s.session, session))
            {
                if let Some(gone) = t.sessions.swap_remove(i) {
                    pr_peer!(
                        pr_info,
                        "{}: session {} of target {} closed\n",
                        driver,
                        &*gone.dir_name,
                        &*t.name
                    );
                    drop(gone);
                }
                return;
            }
        }
    }

    /// The shared state of target `name` of `driver`.
    pub(crate) fn target_state(
        registry: &mut Registry,
        driver: &str,
        name: &[u8],
    ) -> Option<Arc<TargetState>> {
        target_mut(&mut registry.drivers, driver, name).map(|t| t.state.clone())
    }

    /// The number of open sessions of target `name` of `driver`.
    pub(crate) fn session_count(registry: &mut Registry, driver: &str, name: &[u8]) -> usize {
        target_mut(&mut registry.drivers, driver, name).map_or(0, |t| t.sessions.len())
    }

    /// Calls `f` with the name and state of each target of `driver`.
    pub(crate) fn for_each_target(
        registry: &Registry,
        driver: &str,
        mut f: impl FnMut(&CStr, &Arc<TargetState>),
    ) {
        if let Some(d) = registry.drivers.iter().find(|d| d.driver.name() == driver) {
            for t in d.targets.iter() {
                f(&t.name, &t.state);
            }
        }
    }

    /// Closes a session: the driver side first, then its LUN nexuses.
    pub(crate) fn del_session<'a>(
        &self,
        registry: &mut Registry,
        driver: &str,
        target: &'a str,
        initiator: &'a str,
    ) -> MgmtOutcome<'a> {
        let t = target_mut(&mut registry.drivers, driver, target.as_bytes())
            .ok_or(MgmtError::NoSuchObject(target))?;
        let i = t
            .sessions
            .iter()
            .position(|s| name_eq(&s.session.initiator, initiator))
            .ok_or(MgmtError::NoSuchObject(initiator))?;
        drop(t.sessions.swap_remove(i));
        pr_info!("removed session {} from target {}\n", initiator, target);
        Ok(())
    }
}

impl Scst {
    /// Removes `dev` from every LUN table (the device is going away).
    pub(crate) fn unmap_device(registry: &mut Registry, dev: &Arc<DeviceState>) -> Result {
        for d in registry.drivers.iter_mut() {
            for t in d.targets.iter_mut() {
                let mut changed = false;
                while let Some(i) = t.luns.iter().position(|l| Arc::ptr_eq(&l.dev, dev)) {
                    t.luns.swap_remove(i);
                    changed = true;
                }
                for g in t.groups.iter_mut() {
                    while let Some(i) = g.luns.iter().position(|l| Arc::ptr_eq(&l.dev, dev)) {
                        g.luns.swap_remove(i);
                        changed = true;
                    }
                }
                if changed {
                    t.update_sessions()?;
                }
            }
        }
        Ok(())
    }

    /// Removes every target of every driver (module unload).
    pub(crate) fn remove_all_targets(registry: &mut Registry) {
        for d in registry.drivers.iter_mut() {
            for t in d.targets.iter() {
                pr_info!("{}: removing target {}\n", d.driver.name(), &*t.name);
            }
            d.targets.clear();
        }
    }
}
