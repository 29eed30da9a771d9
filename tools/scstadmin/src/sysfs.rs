// SPDX-License-Identifier: GPL-2.0

//! The running system, as `/sys/kernel/scst_tgt` shows it: read into a
//! [`Config`] (what `-write_config` saves) and a [`System`] (what each
//! handler and driver can do), and written one line at a time.

use crate::config::{
    Attr, Config, Device, DeviceGroup, Driver, Group, GroupPort, Handler, Initiator, Lun, Target,
    TargetGroup,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where SCST's tree lives.
pub const DEFAULT_ROOT: &str = "/sys/kernel/scst_tgt";

/// SCST's mark after a value that belongs to the configuration.
pub const KEY_MARK: &str = "[key]";

/// What a device handler takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerInfo {
    pub name: String,
    /// `add_device` parameters; empty for a handler that cannot create
    /// devices (one registered by a user-space program through scst_user).
    pub params: Vec<String>,
    pub creates: bool,
}

/// What a target driver takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInfo {
    pub name: String,
    /// Driver attributes with several values, changed through
    /// `add_attribute`/`del_attribute` (iSCSI's CHAP users, portals).
    pub list_attrs: Vec<String>,
    /// Target attributes with several values, changed through
    /// `add_target_attribute`/`del_target_attribute`.
    pub target_list_attrs: Vec<String>,
    /// The driver's own files in each target (iSCSI's parameters, ...).
    pub target_attrs: Vec<String>,
    /// Targets have sessions made by `add_session` (scst_local).
    pub sessions: bool,
}

/// The running system.
#[derive(Debug, Clone, Default)]
pub struct System {
    /// The configuration now: objects and their key attributes.
    pub config: Config,
    pub handlers: Vec<HandlerInfo>,
    pub drivers: Vec<DriverInfo>,
    /// Every attribute file read, by path under the root: its value
    /// without the key mark.
    pub values: BTreeMap<String, String>,
    /// The attribute files that may be written.
    pub writable: BTreeSet<String>,
    /// LUN parameters (`luns/mgmt`); empty when no target shows them.
    pub lun_params: Vec<String>,
}

impl System {
    pub fn handler(&self, name: &str) -> Option<&HandlerInfo> {
        self.handlers.iter().find(|h| h.name == name)
    }

    pub fn driver(&self, name: &str) -> Option<&DriverInfo> {
        self.drivers.iter().find(|d| d.name == name)
    }
}

/// A refused write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub path: String,
    pub text: String,
    pub error: String,
    /// `last_sysfs_mgmt_res`'s explanation, when the write was a
    /// management command.
    pub reason: Option<String>,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writing '{}' to {}: {}",
            self.text, self.path, self.error
        )?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// The parameters a `mgmt` help text lists after "The following
/// parameters available:".
pub fn help_params(help: &str) -> Vec<String> {
    help_list(help, "The following parameters available:")
}

/// The names a `mgmt` help text lists after `intro`, up to a blank line.
pub fn help_list(help: &str, intro: &str) -> Vec<String> {
    let Some(at) = help.find(intro) else {
        return Vec::new();
    };
    let rest = &help[at + intro.len()..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    rest[..end]
        .split(|c: char| c == ',' || c == '.' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// The attribute names a driver's `mgmt` help gives for `verb`
/// (`add_attribute NAME ...` or `add_target_attribute target_name
/// <A|B> ...`).
pub fn help_list_attrs(help: &str, verb: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in help.lines() {
        let mut words = line.split_whitespace().map(|w| w.trim_matches('"'));
        if !words.any(|w| w == verb) {
            continue;
        }
        if verb == "add_target_attribute" {
            words.next(); // target_name
        }
        if let Some(w) = words.next() {
            for n in w.trim_matches(|c| c == '<' || c == '>').split('|') {
                if !n.is_empty() && !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

/// A value file's text: the value, and whether it carries the key mark.
pub fn split_value(text: &str) -> (String, bool) {
    let mut lines: Vec<&str> = text.lines().collect();
    let key = lines.last() == Some(&KEY_MARK);
    if key {
        lines.pop();
    }
    (lines.join("\n").trim_end().to_string(), key)
}

/// SCST's tree at a root directory.
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> io::Result<String> {
        fs::read_to_string(self.path(rel))
    }

    /// Names in directory `rel`, sorted; directories only when `dirs`.
    fn entries(&self, rel: &str, dirs: bool) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !dirs || e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    fn link_name(&self, rel: &str) -> Option<String> {
        let target = fs::read_link(self.path(rel)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    fn is_link(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// Writes one line, as `echo` does, in one `write(2)`.
    pub fn write(&self, rel: &str, text: &str) -> Result<(), WriteError> {
        let result = fs::OpenOptions::new()
            .write(true)
            .open(self.path(rel))
            .and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()));
        result.map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            // Management commands explain a refusal; other files only
            // return the error (the kernel log has the reason).
            let reason = self.read("last_sysfs_mgmt_res").ok().and_then(|r| {
                let mut lines = r.lines();
                let first = lines.next()?.trim().to_string();
                (first == format!("-{errno}"))
                    .then(|| lines.next().unwrap_or("").trim().to_string())
                    .filter(|s| !s.is_empty())
            });
            WriteError {
                path: rel.to_string(),
                text: text.to_string(),
                error: e.to_string(),
                reason,
            }
        })
    }

    /// Reads attribute file `rel` into `sys`; returns its value and key mark.
    fn attr(&self, sys: &mut System, rel: &str) -> Option<(String, bool)> {
        let meta = fs::metadata(self.path(rel)).ok()?;
        if !meta.is_file() {
            return None;
        }
        let writable = meta.permissions().mode() & 0o200 != 0;
        // A file only root may read (CHAP secrets) fails for others.
        let text = self.read(rel).ok()?;
        let (value, key) = split_value(&text);
        if writable {
            sys.writable.insert(rel.to_string());
        }
        sys.values.insert(rel.to_string(), value.clone());
        Some((value, key))
    }

    /// The key attributes (and list attributes) of the files in `dir`.
    fn key_attrs(
        &self,
        sys: &mut System,
        dir: &str,
        lists: &[String],
        always: &[&str],
    ) -> Vec<Attr> {
        let mut attrs = Vec::new();
        for name in self.entries(dir, false) {
            let rel = format!("{dir}/{name}");
            if name == "mgmt" || self.is_link(&rel) {
                continue;
            }
            let Some((value, key)) = self.attr(sys, &rel) else {
                continue;
            };
            if lists.contains(&name) {
                attrs.extend(
                    value
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| Attr::new(&name, l.trim())),
                );
            } else if key || always.contains(&name.as_str()) {
                attrs.push(Attr::new(&name, &value));
            }
        }
        // `enabled` last: SCST's files enable a target after its setup.
        attrs.sort_by_key(|a| a.name == "enabled");
        attrs
    }

    fn luns(&self, sys: &mut System, dir: &str) -> Vec<Lun> {
        let mut luns = Vec::new();
        for n in self.entries(dir, true) {
            let Ok(number) = n.parse::<u64>() else {
                continue;
            };
            let rel = format!("{dir}/{n}");
            let Some(device) = self.link_name(&format!("{rel}/device")) else {
                continue;
            };
            let attrs = self.key_attrs(sys, &rel, &[], &[]);
            luns.push(Lun {
                number,
                device,
                attrs,
                line: 0,
            });
        }
        luns.sort_by_key(|l| l.number);
        luns
    }

    /// Reads the whole running system.
    pub fn system(&self) -> io::Result<System> {
        fs::metadata(self.path("handlers")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: {} (is scst.ko loaded?)",
                    self.path("handlers").display(),
                    e
                ),
            )
        })?;
        let mut sys = System::default();
        // The core's own writable attributes (none in scst-rs today).
        for name in self.entries("", false) {
            if let Some((value, key)) = self.attr(&mut sys, &name) {
                if key {
                    sys.config.attrs.push(Attr::new(&name, &value));
                }
            }
        }
        for h in self.entries("handlers", true) {
            let help = self.read(&format!("handlers/{h}/mgmt")).unwrap_or_default();
            let creates = help.contains("add_device");
            sys.handlers.push(HandlerInfo {
                name: h.clone(),
                params: help_params(&help),
                creates,
            });
            let mut handler = Handler {
                name: h.clone(),
                ..Handler::default()
            };
            for d in self.entries(&format!("handlers/{h}"), false) {
                if !self.is_link(&format!("handlers/{h}/{d}")) {
                    continue;
                }
                let dir = format!("devices/{d}");
                let attrs = self.key_attrs(&mut sys, &dir, &[], &[]);
                handler.devices.push(Device {
                    name: d,
                    attrs,
                    line: 0,
                });
            }
            if !handler.devices.is_empty() {
                sys.config.handlers.push(handler);
            }
        }
        for d in self.entries("targets", true) {
            let base = format!("targets/{d}");
            let help = self.read(&format!("{base}/mgmt")).unwrap_or_default();
            let info = DriverInfo {
                name: d.clone(),
                list_attrs: help_list_attrs(&help, "add_attribute"),
                target_list_attrs: help_list_attrs(&help, "add_target_attribute"),
                target_attrs: help_list(&help, "The following target attributes available:"),
                sessions: help.contains("add_session"),
            };
            let mut driver = Driver {
                name: d.clone(),
                attrs: self.key_attrs(&mut sys, &base, &info.list_attrs, &["enabled"]),
                ..Driver::default()
            };
            for t in self.entries(&base, true) {
                let dir = format!("{base}/{t}");
                if sys.lun_params.is_empty() {
                    let help = self.read(&format!("{dir}/luns/mgmt")).unwrap_or_default();
                    sys.lun_params = help_params(&help);
                }
                let mut target = Target {
                    name: t.clone(),
                    attrs: self.key_attrs(&mut sys, &dir, &info.target_list_attrs, &["enabled"]),
                    luns: self.luns(&mut sys, &format!("{dir}/luns")),
                    ..Target::default()
                };
                if info.sessions {
                    let sessions = self.entries(&format!("{dir}/sessions"), true);
                    // Before `enabled`, as the other attributes.
                    let at = target.attrs.len()
                        - usize::from(target.attrs.last().is_some_and(|a| a.name == "enabled"));
                    for (i, s) in sessions.iter().enumerate() {
                        target.attrs.insert(at + i, Attr::new("session_name", s));
                    }
                }
                for g in self.entries(&format!("{dir}/ini_groups"), true) {
                    let gdir = format!("{dir}/ini_groups/{g}");
                    let initiators = self
                        .entries(&format!("{gdir}/initiators"), false)
                        .into_iter()
                        .filter(|n| n != "mgmt")
                        .map(|name| Initiator { name, line: 0 })
                        .collect();
                    target.groups.push(Group {
                        name: g.clone(),
                        luns: self.luns(&mut sys, &format!("{gdir}/luns")),
                        initiators,
                        line: 0,
                    });
                }
                driver.targets.push(target);
            }
            sys.drivers.push(info);
            sys.config.drivers.push(driver);
        }
        for g in self.entries("device_groups", true) {
            let base = format!("device_groups/{g}");
            let devices = self
                .entries(&format!("{base}/devices"), false)
                .into_iter()
                .filter(|n| self.is_link(&format!("{base}/devices/{n}")))
                .map(|name| Initiator { name, line: 0 })
                .collect();
            let mut group = DeviceGroup {
                name: g.clone(),
                devices,
                ..DeviceGroup::default()
            };
            for tg in self.entries(&format!("{base}/target_groups"), true) {
                let dir = format!("{base}/target_groups/{tg}");
                let attrs = self.key_attrs(&mut sys, &dir, &[], &["state"]);
                let mut ports = Vec::new();
                for name in self.entries(&dir, false) {
                    let rel = format!("{dir}/{name}");
                    if self.is_link(&rel) {
                        ports.push(GroupPort {
                            name,
                            ..GroupPort::default()
                        });
                    } else if self.path(&rel).is_dir() {
                        let attrs = self.key_attrs(&mut sys, &rel, &[], &[]);
                        ports.push(GroupPort {
                            name,
                            attrs,
                            line: 0,
                        });
                    }
                }
                group.target_groups.push(TargetGroup {
                    name: tg,
                    attrs,
                    ports,
                    line: 0,
                });
            }
            sys.config.device_groups.push(group);
        }
        Ok(sys)
    }
}
