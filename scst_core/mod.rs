// SPDX-License-Identifier: GPL-2.0

//! scst_core: the registries of handlers, devices and target drivers, and
//! the `/sys/kernel/scst_tgt` tree through which they are managed.
//!
//! # Locking
//!
//! `Scst::registry` serializes every management command (SCST's
//! `scst_mutex`). Management writes run with kernfs active protection broken
//! (see `kernel_ext::sysfs`), so they may remove any sysfs entry while
//! holding it. Attribute reads never take it: removing an attribute waits
//! for its reads, so a read waiting for `registry` could deadlock.

// Pure logic shared with the host tests.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod alua;
pub(crate) mod buffer;
pub(crate) mod cmd;
// Shared with the host test crate, where its items are public API; some
// serve only the host tests and drivers still to come.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod cdb;
pub(crate) mod device;
pub(crate) mod device_groups;
mod device_groups_sysfs;
mod extended_copy;
#[allow(unreachable_pub)]
pub(crate) mod mgmt;
// Pure logic shared with the host tests, where some items serve only them.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod pr;
pub(crate) mod reservation;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod sense;
pub(crate) mod session;
mod slots;
pub(crate) mod target;
// Pure logic shared with the host tests; iSCSI and SRP decode the other
// attributes.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod task_set;
// Pure logic shared with the host tests.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod xcopy;

use crate::kernel_ext::sysfs::{Dir, DirRef, File, Link, Mode, SysfsBuf, SysfsOps};
use core::fmt::Write;
use core::sync::atomic::{AtomicU16, AtomicU32};
use device::{DevHandler, Device, DeviceAttr, DeviceState};
use kernel::{
    alloc::{flags::GFP_KERNEL, AllocError},
    c_str,
    error::code::*,
    fmt, new_mutex,
    prelude::*,
    str::CString,
    sync::{Arc, Mutex},
};
use mgmt::{Line, MgmtError, TextBuf};
use slots::Slots;
use target::DriverEntry;

/// An owned, NUL-terminated copy of `s` (for names kept in objects and
/// handed to C).
pub(crate) fn cstring(s: &str) -> Result<CString> {
    CString::try_from_fmt(fmt!("{s}"))
}

/// How much of a refused `mgmt` line the kernel log repeats.
const MAX_LOGGED_CHARS: usize = 120;

/// The version `version` reports.
pub(crate) const VERSION: &str = "0.1.0";

/// Why a management command failed.
pub(crate) enum MgmtFailure<'a> {
    /// The line itself is wrong: the admin gets the reason.
    Invalid(MgmtError<'a>),
    /// The kernel could not carry it out (e.g. `ENOMEM`).
    System(Error),
}

impl<'a> From<MgmtError<'a>> for MgmtFailure<'a> {
    fn from(e: MgmtError<'a>) -> Self {
        Self::Invalid(e)
    }
}

impl From<Error> for MgmtFailure<'_> {
    fn from(e: Error) -> Self {
        Self::System(e)
    }
}

impl From<AllocError> for MgmtFailure<'_> {
    fn from(_: AllocError) -> Self {
        Self::System(ENOMEM)
    }
}

impl MgmtFailure<'_> {
    pub(crate) fn errno(&self) -> Error {
        match self {
            Self::Invalid(MgmtError::AlreadyExists(_)) => EEXIST,
            Self::Invalid(_) => EINVAL,
            Self::System(e) => *e,
        }
    }
}

/// Outcome of a management command, in the form of the `mgmt` write result.
pub(crate) type MgmtOutcome<'a> = core::result::Result<(), MgmtFailure<'a>>;

/// What `last_sysfs_mgmt_res` shows: the errno of the last command (0 on
/// success) on the first line, as SCST prints it, then the reason.
struct LastResult {
    errno: i32,
    reason: TextBuf<256>,
}

/// The registries, guarded by `Scst::registry`.
pub(crate) struct Registry {
    handlers: Slots<HandlerEntry>,
    devices: Slots<Device>,
    drivers: Slots<DriverEntry>,
}

/// The SCST core: one per module instance.
#[pin_data]
pub(crate) struct Scst {
    #[pin]
    registry: Mutex<Registry>,
    #[pin]
    last_result: Mutex<LastResult>,
    handlers_dir: DirRef,
    devices_dir: DirRef,
    targets_dir: DirRef,
    device_groups_dir: DirRef,
    /// Device groups and target port groups (ALUA).
    alua_config: Arc<device_groups::AluaConfig>,
    /// Relative target port identifier of the next target.
    next_rel_tgt_id: AtomicU16,
    /// Number of the next `devices/<d>/exported/exportN` link.
    next_export: AtomicU32,
    /// Where commands execute.
    exec: Arc<cmd::ExecQueue>,
}

impl Scst {
    /// Runs `f` on the core's workqueue (see [`cmd::ExecQueue::spawn`]).
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) -> Result {
        self.exec.spawn(f)
    }

    /// Runs `f` under the registry lock, for a driver's own lookups (an
    /// iSCSI login finding its target); never from a sysfs read.
    pub(crate) fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock())
    }

    /// Runs one management write under the registry lock and records its
    /// result in `last_sysfs_mgmt_res` and, on failure, the kernel log.
    pub(crate) fn run_mgmt<'a>(
        &self,
        file: &str,
        input: &'a [u8],
        command: impl FnOnce(&mut Registry, Line<'a>) -> MgmtOutcome<'a>,
    ) -> Result {
        let outcome = {
            let mut registry = self.registry.lock();
            Line::parse(input)
                .map_err(MgmtFailure::from)
                .and_then(|line| command(&mut registry, line))
        };
        let mut last = self.last_result.lock();
        last.reason.clear();
        match outcome {
            Ok(()) => {
                last.errno = 0;
                Ok(())
            }
            Err(failure) => {
                let errno = failure.errno();
                last.errno = errno.to_errno();
                match &failure {
                    MgmtFailure::Invalid(e) => {
                        let _ = write!(last.reason, "{e}");
                    }
                    MgmtFailure::System(e) => {
                        let _ = match mgmt::errno_name(e.to_errno()) {
                            Some(name) => write!(last.reason, "{name}"),
                            None => write!(last.reason, "error {}", e.to_errno()),
                        };
                    }
                }
                // Debug formatting escapes control characters, so a line
                // cannot forge log lines; long lines are cut.
                let text = core::str::from_utf8(input).unwrap_or("<not text>").trim();
                let shown = text
                    .char_indices()
                    .nth(MAX_LOGGED_CHARS)
                    .map_or(text, |(i, _)| text.get(..i).unwrap_or(text));
                pr_err!(
                    "{}: {:?}{} failed: {} ({})\n",
                    file,
                    shown,
                    if shown.len() < text.len() { "..." } else { "" },
                    last.reason.as_str(),
                    last.errno
                );
                Err(errno)
            }
        }
    }

    /// Registers a device handler: creates `handlers/<name>/` with `mgmt`
    /// and `type`.
    pub(crate) fn register_handler(self: &Arc<Self>, handler: Arc<dyn DevHandler>) -> Result {
        self.insert_handler(&mut self.registry.lock(), handler)
    }

    fn insert_handler(
        self: &Arc<Self>,
        registry: &mut Registry,
        handler: Arc<dyn DevHandler>,
    ) -> Result {
        if registry
            .handlers
            .find(|h| h.handler.name() == handler.name())
            .is_some()
        {
            return Err(EEXIST);
        }
        let dir = Dir::new(&self.handlers_dir, handler.name())?;
        let ops = Arc::new(
            HandlerOps {
                scst: self.clone(),
                handler: handler.clone(),
            },
            GFP_KERNEL,
        )?;
        let mgmt = File::new(
            &dir,
            c_str!("mgmt"),
            Mode::ReadWrite,
            ops.clone(),
            HandlerAttr::Mgmt,
        )?;
        let type_file = File::new(&dir, c_str!("type"), Mode::ReadOnly, ops, HandlerAttr::Type)?;
        registry.handlers.insert(HandlerEntry {
            handler,
            _mgmt: mgmt,
            _type: type_file,
            dir,
        })
    }

    /// Registers a handler that has exactly one device of its own name, the
    /// logical unit `lu` (a user-space handler's device, which appears as
    /// `handlers/<name>/<name>` and `devices/<name>`).
    pub(crate) fn add_handler_device(
        self: &Arc<Self>,
        handler: Arc<dyn DevHandler>,
        lu: Arc<dyn device::LogicalUnit>,
    ) -> Result {
        let mut registry = self.registry.lock();
        let name = handler.name();
        if registry.devices.find(|d| d.name_is(name)).is_some() {
            return Err(EEXIST);
        }
        self.insert_handler(&mut registry, handler.clone())?;
        let outcome = self
            .add_device(&mut registry, &*handler, name, lu)
            .map_err(|f| f.errno());
        if outcome.is_err() {
            registry
                .handlers
                .remove(|h| h.handler.name() == handler.name());
        }
        outcome
    }

    /// Queues unit attention `sense` on every nexus of device `name`.
    pub(crate) fn raise_device_ua(&self, name: &str, sense: sense::Sense) {
        let registry = self.registry.lock();
        if let Some(d) = registry.devices.find(|d| d.name_is(name)) {
            d.state.raise_ua(sense, None);
        }
    }

    /// Removes what [`Self::add_handler_device`] added: the device leaves
    /// every LUN table, then goes with its handler.
    pub(crate) fn remove_handler_device(&self, name: &str) {
        let mut registry = self.registry.lock();
        let state = registry
            .devices
            .find(|d| d.name_is(name) && d.state.handler_name.as_bytes() == name.as_bytes())
            .map(|d| d.state.clone());
        if let Some(state) = state {
            self.alua_forget_device(&state);
            if Self::unmap_device(&mut registry, &state).is_err() {
                pr_warn!("device {}: not every LUN could be told\n", name);
            }
            if registry.devices.remove(|d| d.name_is(name)).is_some() {
                pr_info!("removed device {}\n", name);
            }
        }
        registry.handlers.remove(|h| h.handler.name() == name);
    }

    /// Removes every device and handler; called once at module unload. This
    /// also breaks the reference cycle between the registry and the handler
    /// `mgmt` files, which hold the core.
    pub(crate) fn shutdown(&self) {
        let mut registry = self.registry.lock();
        self.alua_clear();
        Self::remove_all_targets(&mut registry);
        while registry.drivers.take_any().is_some() {}
        while let Some(device) = registry.devices.take_any() {
            pr_info!("removing device {}\n", &*device.state.name);
        }
        while registry.handlers.take_any().is_some() {}
    }

    fn handler_mgmt<'a>(
        &self,
        registry: &mut Registry,
        handler: &dyn DevHandler,
        mut line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        match line.verb() {
            "add_device" => {
                let name = line.name("device name")?;
                if registry.devices.find(|d| d.name_is(name)).is_some() {
                    return Err(MgmtError::AlreadyExists(name).into());
                }
                let lu = handler.create(name, line.params())?;
                self.add_device(registry, handler, name, lu)
            }
            "del_device" => {
                let name = line.name("device name")?;
                line.end()?;
                match self.delete_device(registry, handler.name(), name)? {
                    true => Ok(()),
                    false => Err(MgmtError::NoSuchObject(name).into()),
                }
            }
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }

    /// Removes device `name` of handler `handler_name`: it leaves its
    /// device group and every LUN table first, as in SCST. `false`: no
    /// such device.
    fn delete_device(
        &self,
        registry: &mut Registry,
        handler_name: &str,
        name: &str,
    ) -> Result<bool> {
        let Some(state) = registry
            .devices
            .find(|d| d.name_is(name) && d.state.handler_name.as_bytes() == handler_name.as_bytes())
            .map(|d| d.state.clone())
        else {
            return Ok(false);
        };
        self.alua_forget_device(&state);
        Self::unmap_device(registry, &state)?;
        let removed = registry.devices.remove(|d| d.name_is(name)).is_some();
        if removed {
            pr_info!("removed device {}\n", name);
        }
        Ok(removed)
    }

    /// Removes device `name` if one of the handlers `handler_names`
    /// (say: `true`) has it, as `del_device` would: for a device whose
    /// backing left the system. Whether it was there.
    pub(crate) fn remove_device_of(
        &self,
        name: &str,
        handler_names: impl Fn(&str) -> bool,
    ) -> bool {
        let mut registry = self.registry.lock();
        let Some(state) = registry
            .devices
            .find(|d| d.name_is(name))
            .map(|d| d.state.clone())
        else {
            return false;
        };
        let handler = match state.handler_name.to_str() {
            Ok(h) if handler_names(h) => h,
            _ => return false,
        };
        match self.delete_device(&mut registry, handler, name) {
            Ok(removed) => removed,
            Err(e) => {
                pr_warn!("device {}: not removed ({:?})\n", name, e);
                false
            }
        }
    }

    fn add_device<'a>(
        &self,
        registry: &mut Registry,
        handler: &dyn DevHandler,
        name: &'a str,
        lu: Arc<dyn device::LogicalUnit>,
    ) -> MgmtOutcome<'a> {
        let handler_dir = registry
            .handlers
            .find(|h| h.handler.name() == handler.name())
            .map(|h| h.dir.to_ref())
            .ok_or(ENODEV)?;
        let dev_name = cstring(name)?;
        let state = DeviceState::new(
            dev_name,
            cstring(handler.name())?,
            handler.device_type(),
            lu.clone(),
            self.exec.clone(),
            self.alua_config.clone(),
        )?;
        reservation::load_saved(&state);
        let dir = Dir::new(&self.devices_dir, name)?;
        let mut files = KVec::new();
        files.push(
            File::new(
                &dir,
                c_str!("type"),
                Mode::ReadOnly,
                state.clone(),
                DeviceAttr::Type,
            )?,
            GFP_KERNEL,
        )?;
        files.push(
            File::new(
                &dir,
                c_str!("max_tgt_dev_commands"),
                Mode::ReadWrite,
                state.clone(),
                DeviceAttr::MaxTgtDevCommands,
            )?,
            GFP_KERNEL,
        )?;
        for (file, mode, attr) in [
            (
                c_str!("threads_num"),
                Mode::ReadWrite,
                DeviceAttr::ThreadsNum,
            ),
            (
                c_str!("threads_pool_type"),
                Mode::ReadWrite,
                DeviceAttr::ThreadsPoolType,
            ),
            (
                c_str!("active_commands"),
                Mode::ReadOnly,
                DeviceAttr::ActiveCommands,
            ),
            (
                c_str!("pr_file_name"),
                Mode::ReadOnly,
                DeviceAttr::PrFileName,
            ),
            (c_str!("expl_alua"), Mode::ReadWrite, DeviceAttr::ExplAlua),
        ] {
            files.push(
                File::new(&dir, file, mode, state.clone(), attr)?,
                GFP_KERNEL,
            )?;
        }
        for (i, attr) in lu.attributes().iter().enumerate() {
            let mode = if attr.writable {
                Mode::ReadWrite
            } else {
                Mode::ReadOnly
            };
            files.push(
                File::new(&dir, attr.name, mode, state.clone(), DeviceAttr::Lu(i))?,
                GFP_KERNEL,
            )?;
        }
        let device = Device {
            _handler_link: Link::new(&dir, "handler", &handler_dir)?,
            _link_in_handler: Link::new(&handler_dir, name, &dir)?,
            exported: Dir::new(&dir, "exported")?,
            _files: files,
            _dir: dir,
            state,
        };
        registry.devices.insert(device)?;
        pr_info!(
            "added {} device {}: {} bytes\n",
            handler.name(),
            name,
            lu.size()
        );
        Ok(())
    }
}

/// Attributes at the root of the tree.
#[derive(Clone, Copy)]
pub(crate) enum RootAttr {
    Version,
    LastMgmtResult,
}

impl SysfsOps for Scst {
    type Attr = RootAttr;

    fn show(&self, attr: RootAttr, out: &mut SysfsBuf) -> Result {
        let _ = match attr {
            RootAttr::Version => writeln!(out, "{VERSION}"),
            RootAttr::LastMgmtResult => {
                let last = self.last_result.lock();
                if last.errno == 0 {
                    writeln!(out, "0")
                } else {
                    writeln!(out, "{}\n{}", last.errno, last.reason.as_str())
                }
            }
        };
        Ok(())
    }
}

struct HandlerEntry {
    handler: Arc<dyn DevHandler>,
    _mgmt: File<HandlerOps>,
    _type: File<HandlerOps>,
    dir: Dir,
}

struct HandlerOps {
    scst: Arc<Scst>,
    handler: Arc<dyn DevHandler>,
}

#[derive(Clone, Copy)]
enum HandlerAttr {
    Mgmt,
    Type,
}

impl SysfsOps for HandlerOps {
    type Attr = HandlerAttr;

    fn show(&self, attr: HandlerAttr, out: &mut SysfsBuf) -> Result {
        let _ = match attr {
            HandlerAttr::Mgmt => out.write_str(self.handler.mgmt_help()),
            HandlerAttr::Type => {
                let t = self.handler.device_type();
                writeln!(out, "{t} - {}", device::device_type_name(t))
            }
        };
        Ok(())
    }

    fn store(&self, attr: HandlerAttr, input: &[u8]) -> Result {
        match attr {
            HandlerAttr::Mgmt => {
                self.scst
                    .run_mgmt(self.handler.name(), input, |registry, line| {
                        self.scst.handler_mgmt(registry, &*self.handler, line)
                    })
            }
            HandlerAttr::Type => Err(EACCES),
        }
    }
}

/// The core as the module owns it: the tree's fixed directories and root
/// files, and the registries. Fields drop in order, children first.
pub(crate) struct Core {
    scst: Arc<Scst>,
    _root_files: KVec<File<Scst>>,
    _device_groups_mgmt: File<device_groups_sysfs::AluaOps>,
    _device_groups: Dir,
    _handlers: Dir,
    _devices: Dir,
    _targets: Dir,
    _root: Dir,
}

impl Core {
    /// Creates `/sys/kernel/scst_tgt` and the empty registries.
    pub(crate) fn new() -> Result<Self> {
        let root = Dir::new_in_sys_kernel("scst_tgt")?;
        let handlers = Dir::new(&root, "handlers")?;
        let devices = Dir::new(&root, "devices")?;
        let targets = Dir::new(&root, "targets")?;
        let device_groups = Dir::new(&root, "device_groups")?;
        let (handlers_dir, devices_dir, targets_dir, device_groups_dir) = (
            handlers.to_ref(),
            devices.to_ref(),
            targets.to_ref(),
            device_groups.to_ref(),
        );
        let exec = cmd::ExecQueue::new()?;
        let alua_config = device_groups::AluaConfig::new()?;
        let scst = Arc::pin_init(
            pin_init!(Scst {
                registry <- new_mutex!(Registry {
                    handlers: Slots::new(),
                    devices: Slots::new(),
                    drivers: Slots::new(),
                }),
                last_result <- new_mutex!(LastResult {
                    errno: 0,
                    reason: TextBuf::new(),
                }),
                handlers_dir,
                devices_dir,
                targets_dir,
                device_groups_dir,
                alua_config,
                next_rel_tgt_id: AtomicU16::new(1),
                next_export: AtomicU32::new(0),
                exec,
            }),
            GFP_KERNEL,
        )?;
        let mut root_files = KVec::new();
        for (name, attr) in [
            (c_str!("version"), RootAttr::Version),
            (c_str!("last_sysfs_mgmt_res"), RootAttr::LastMgmtResult),
        ] {
            root_files.push(
                File::new(&root, name, Mode::ReadOnly, scst.clone(), attr)?,
                GFP_KERNEL,
            )?;
        }
        let device_groups_mgmt = File::new(
            &device_groups,
            c_str!("mgmt"),
            Mode::ReadWrite,
            Arc::new(
                device_groups_sysfs::AluaOps {
                    scst: scst.clone(),
                    dg: None,
                    tg: None,
                },
                GFP_KERNEL,
            )?,
            device_groups_sysfs::AluaAttr::GroupsMgmt,
        )?;
        Ok(Self {
            scst,
            _root_files: root_files,
            _device_groups_mgmt: device_groups_mgmt,
            _device_groups: device_groups,
            _handlers: handlers,
            _devices: devices,
            _targets: targets,
            _root: root,
        })
    }

    pub(crate) fn scst(&self) -> &Arc<Scst> {
        &self.scst
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.scst.shutdown();
        // The drivers have stopped: wait for the commands still executing.
        self.scst.exec.close();
    }
}
