// SPDX-License-Identifier: GPL-2.0

//! From the running system and a wanted configuration to the list of sysfs
//! writes that turn one into the other, changing nothing that is already
//! as wanted.
//!
//! Without `force` nothing is removed: objects the file does not name stay.
//! With it, objects and list values (CHAP users, portals the file lists)
//! the file lacks are removed; attributes it does not name keep their
//! values, as they would on objects it makes. Every check that
//! can be made before a change is made here, so that a file that cannot be
//! applied is refused with its line numbers before anything changes.

use crate::config::{Attr, Config, ConfigError, Device, Driver, Group, Lun, Target};
use crate::sysfs::System;

/// One write: `text` to the file `path` (relative to the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub path: String,
    pub text: String,
}

/// Device attributes the core lets one write once a device exists, on
/// every device (`devices/<name>/...`).
pub const CORE_DEVICE_ATTRS: [&str; 4] = [
    "threads_num",
    "threads_pool_type",
    "max_tgt_dev_commands",
    "expl_alua",
];

/// Target attributes every target driver has.
pub const CORE_TARGET_ATTRS: [&str; 2] = ["enabled", "rel_tgt_id"];

/// Driver attributes whose list the file leaves as it is when it names
/// none of them, even with `force`: the listening addresses are the
/// driver's set-up, not an object of the configuration.
const KEPT_UNLESS_NAMED: [&str; 1] = ["portal"];

struct Planner<'a> {
    sys: &'a System,
    /// The configuration as the steps so far leave it.
    cur: Config,
    steps: Vec<Step>,
    errors: Vec<ConfigError>,
    force: bool,
}

fn attr<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name == name)
}

/// Whether `attrs` has `a`'s name with an equal value.
fn holds(attrs: &[Attr], a: &Attr) -> bool {
    attrs
        .iter()
        .any(|x| x.name == a.name && same_value(&x.value, &a.value))
}

/// `add_device`'s and a LUN's parameters as a `mgmt` line takes them:
/// ` key=value; key=value`, or nothing.
pub fn mgmt_params<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let params: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if params.is_empty() {
        String::new()
    } else {
        format!(" {}", params.join("; "))
    }
}

/// Compares attribute values as the kernel shows them: `Yes`/`yes`,
/// `CRC32C, None`/`CRC32C,None`.
fn same_value(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    };
    norm(a) == norm(b)
}

impl Planner<'_> {
    fn error(&mut self, line: usize, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            line,
            reason: reason.into(),
        });
    }

    fn step(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.steps.push(Step {
            path: path.into(),
            text: text.into(),
        });
    }

    fn cur_driver(&mut self, name: &str) -> &mut Driver {
        if let Some(i) = self.cur.drivers.iter().position(|d| d.name == name) {
            return &mut self.cur.drivers[i];
        }
        self.cur.drivers.push(Driver {
            name: name.into(),
            ..Driver::default()
        });
        let last = self.cur.drivers.len() - 1;
        &mut self.cur.drivers[last]
    }

    fn cur_target(&mut self, driver: &str, target: &str) -> Option<&mut Target> {
        self.cur_driver(driver)
            .targets
            .iter_mut()
            .find(|t| t.name == target)
    }

    /// Forgets every LUN of the current configuration that maps `device`
    /// (the kernel removes them with the device).
    fn forget_luns_of(&mut self, device: &str) {
        for t in self.cur.drivers.iter_mut().flat_map(|d| &mut d.targets) {
            t.luns.retain(|l| l.device != device);
            for g in &mut t.groups {
                g.luns.retain(|l| l.device != device);
            }
        }
    }

    /// Whether a LUN may map `name`: the file makes it, or it runs and
    /// stays.
    fn device_available(&self, wanted: &Config, name: &str) -> bool {
        wanted.device(name).is_some() || self.cur.device(name).is_some()
    }

    // ---- removals (force) ----

    fn remove_unwanted_device_groups(&mut self, wanted: &Config) {
        let running = self.cur.device_groups.clone();
        for g in &running {
            let Some(wg) = wanted.device_groups.iter().find(|w| w.name == g.name) else {
                self.step("device_groups/mgmt", format!("del {}", g.name));
                self.cur.device_groups.retain(|x| x.name != g.name);
                continue;
            };
            let base = format!("device_groups/{}", g.name);
            for d in &g.devices {
                if !wg.devices.iter().any(|w| w.name == d.name) {
                    self.step(format!("{base}/devices/mgmt"), format!("del {}", d.name));
                }
            }
            for tg in &g.target_groups {
                let Some(wtg) = wg.target_groups.iter().find(|w| w.name == tg.name) else {
                    self.step(
                        format!("{base}/target_groups/mgmt"),
                        format!("del {}", tg.name),
                    );
                    continue;
                };
                for p in &tg.ports {
                    if !wtg.ports.iter().any(|w| w.name == p.name) {
                        self.step(
                            format!("{base}/target_groups/{}/mgmt", tg.name),
                            format!("del {}", p.name),
                        );
                    }
                }
            }
        }
    }

    fn remove_unwanted(&mut self, wanted: &Config) {
        self.remove_unwanted_device_groups(wanted);
        let running = self.cur.clone();
        for d in &running.drivers {
            let want = wanted.drivers.iter().find(|w| w.name == d.name);
            let empty = Driver::default();
            let want = want.unwrap_or(&empty);
            let base = format!("targets/{}", d.name);
            let info = self.sys.driver(&d.name).cloned().unwrap_or_default();
            for t in &d.targets {
                let Some(wt) = want.targets.iter().find(|w| w.name == t.name) else {
                    self.step(format!("{base}/mgmt"), format!("del_target {}", t.name));
                    self.cur_driver(&d.name)
                        .targets
                        .retain(|x| x.name != t.name);
                    continue;
                };
                let tdir = format!("{base}/{}", t.name);
                for a in &t.attrs {
                    let listed = holds(&wt.attrs, a);
                    if listed {
                        continue;
                    }
                    if info.target_list_attrs.contains(&a.name) {
                        let key = list_key(&a.name, &a.value);
                        self.step(
                            format!("{base}/mgmt"),
                            format!("del_target_attribute {} {} {}", t.name, a.name, key),
                        );
                    } else if a.name == "session_name" && info.sessions {
                        self.step(
                            format!("{base}/mgmt"),
                            format!("del_session {} {}", t.name, a.value),
                        );
                    }
                }
                for l in &t.luns {
                    if !wt.luns.iter().any(|w| w.number == l.number) {
                        self.step(format!("{tdir}/luns/mgmt"), format!("del {}", l.number));
                    }
                }
                for g in &t.groups {
                    let Some(wg) = wt.groups.iter().find(|w| w.name == g.name) else {
                        self.step(format!("{tdir}/ini_groups/mgmt"), format!("del {}", g.name));
                        continue;
                    };
                    let gdir = format!("{tdir}/ini_groups/{}", g.name);
                    for l in &g.luns {
                        if !wg.luns.iter().any(|w| w.number == l.number) {
                            self.step(format!("{gdir}/luns/mgmt"), format!("del {}", l.number));
                        }
                    }
                    for i in &g.initiators {
                        // An initiator the file puts in another group moves there later.
                        let elsewhere = wt
                            .groups
                            .iter()
                            .any(|w| w.initiators.iter().any(|x| x.name == i.name));
                        if !elsewhere {
                            self.step(format!("{gdir}/initiators/mgmt"), format!("del {}", i.name));
                        }
                    }
                }
                let cur = self.cur_target(&d.name, &t.name);
                if let Some(cur) = cur {
                    cur.attrs.retain(|a| {
                        !(info.target_list_attrs.contains(&a.name) || a.name == "session_name")
                            || holds(&wt.attrs, a)
                    });
                    cur.luns
                        .retain(|l| wt.luns.iter().any(|w| w.number == l.number));
                    cur.groups
                        .retain(|g| wt.groups.iter().any(|w| w.name == g.name));
                    for g in &mut cur.groups {
                        let Some(wg) = wt.groups.iter().find(|w| w.name == g.name) else {
                            continue;
                        };
                        g.luns
                            .retain(|l| wg.luns.iter().any(|w| w.number == l.number));
                        g.initiators.retain(|i| {
                            wt.groups
                                .iter()
                                .any(|w| w.initiators.iter().any(|x| x.name == i.name))
                        });
                    }
                }
            }
            // Driver-level lists (CHAP users).
            for a in &d.attrs {
                if !info.list_attrs.contains(&a.name) {
                    continue;
                }
                let named = want.attrs.iter().any(|w| w.name == a.name);
                if KEPT_UNLESS_NAMED.contains(&a.name.as_str()) && !named {
                    continue;
                }
                if !holds(&want.attrs, a) {
                    self.step(
                        format!("{base}/mgmt"),
                        format!("del_attribute {} {}", a.name, list_key(&a.name, &a.value)),
                    );
                    let a = a.clone();
                    self.cur_driver(&d.name).attrs.retain(|x| x != &a);
                }
            }
        }
        for h in &running.handlers {
            let creates = self.sys.handler(&h.name).is_some_and(|i| i.creates);
            for d in &h.devices {
                let wanted_here = wanted
                    .device(&d.name)
                    .is_some_and(|(wh, _)| wh.name == h.name);
                // Devices of user-space handlers go when their program ends.
                if !wanted_here && creates {
                    self.step(
                        format!("handlers/{}/mgmt", h.name),
                        format!("del_device {}", d.name),
                    );
                    self.forget_luns_of(&d.name);
                    for ch in &mut self.cur.handlers {
                        ch.devices.retain(|x| x.name != d.name);
                    }
                }
            }
        }
    }

    // ---- devices ----

    fn devices(&mut self, wanted: &Config) {
        for h in &wanted.handlers {
            let Some(info) = self.sys.handler(&h.name).cloned() else {
                self.error(
                    h.line,
                    format!(
                        "no handler '{}' (is its module or user-space program running?)",
                        h.name
                    ),
                );
                continue;
            };
            for d in &h.devices {
                self.device(&info, d);
            }
        }
    }

    /// Whether device attribute `name` can be written once the device exists.
    fn device_attr_writable(&self, device: &str, name: &str, exists: bool) -> bool {
        if exists {
            return self
                .sys
                .writable
                .contains(&format!("devices/{device}/{name}"));
        }
        CORE_DEVICE_ATTRS.contains(&name)
    }

    fn device(&mut self, info: &crate::sysfs::HandlerInfo, d: &Device) {
        let running = self
            .cur
            .device(&d.name)
            .map(|(h, dev)| (h.name.clone(), dev.clone()));
        if !info.creates {
            // A user-space handler's device: only referenced.
            match &running {
                Some((h, _)) if *h == info.name => {}
                _ => {
                    self.error(
                        d.line,
                        format!(
                            "device {} is made by its user-space handler '{}', which has not registered it: start the handler first",
                            d.name, info.name
                        ),
                    );
                    return;
                }
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for a in &d.attrs {
            if seen.contains(&a.name.as_str()) {
                self.error(a.line, format!("attribute {} given twice", a.name));
            }
            seen.push(&a.name);
            let exists = running.is_some();
            if !info.params.contains(&a.name)
                && !self.device_attr_writable(&d.name, &a.name, exists)
            {
                self.error(
                    a.line,
                    format!(
                        "device attribute '{}' cannot be set on {} devices{}",
                        a.name,
                        info.name,
                        if info.params.is_empty() {
                            String::new()
                        } else {
                            format!(" (add_device takes: {})", info.params.join(", "))
                        }
                    ),
                );
            }
        }
        let mgmt = format!("handlers/{}/mgmt", info.name);
        let recreate = match &running {
            None => true,
            Some((h, _)) if *h != info.name => {
                if !self.force {
                    self.error(
                        d.line,
                        format!(
                            "device {} exists with handler {}: -force re-creates it",
                            d.name, h
                        ),
                    );
                    return;
                }
                self.step(
                    format!("handlers/{h}/mgmt"),
                    format!("del_device {}", d.name),
                );
                true
            }
            Some((_, dev)) => {
                // Creation parameters that differ and cannot be written.
                let fixed: Vec<String> = info
                    .params
                    .iter()
                    .filter(|p| !self.device_attr_writable(&d.name, p, true))
                    .filter(|p| {
                        let want = attr(&d.attrs, p).map(|a| a.value.as_str());
                        let have = attr(&dev.attrs, p).map(|a| a.value.as_str());
                        match (want, have) {
                            (Some(w), Some(h)) => !same_value(w, h),
                            (None, None) => false,
                            // Given on one side only: differs unless it
                            // is the value the other side has anyway.
                            (Some(w), None) => self
                                .sys
                                .values
                                .get(&format!("devices/{}/{p}", d.name))
                                .is_none_or(|h| !same_value(w, h)),
                            (None, Some(_)) => true,
                        }
                    })
                    .cloned()
                    .collect();
                if fixed.is_empty() {
                    false
                } else if !self.force {
                    self.error(
                        d.line,
                        format!(
                            "device {} exists with other {}: -force re-creates it",
                            d.name,
                            fixed.join(", ")
                        ),
                    );
                    return;
                } else {
                    self.step(mgmt.clone(), format!("del_device {}", d.name));
                    true
                }
            }
        };
        if recreate && info.creates {
            self.forget_luns_of(&d.name);
            for ch in &mut self.cur.handlers {
                ch.devices.retain(|x| x.name != d.name);
            }
            let params = mgmt_params(
                d.attrs
                    .iter()
                    .filter(|a| info.params.contains(&a.name))
                    .map(|a| (a.name.as_str(), a.value.as_str())),
            );
            let line = format!("add_device {}{params}", d.name);
            self.step(mgmt, line);
            for a in d.attrs.iter().filter(|a| !info.params.contains(&a.name)) {
                self.step(format!("devices/{}/{}", d.name, a.name), a.value.clone());
            }
            let mut dev = d.clone();
            dev.line = 0;
            match self.cur.handlers.iter_mut().find(|h| h.name == info.name) {
                Some(h) => h.devices.push(dev),
                None => self.cur.handlers.push(crate::config::Handler {
                    name: info.name.clone(),
                    devices: vec![dev],
                    line: 0,
                }),
            }
            return;
        }
        // The device stays: write what differs.
        for a in &d.attrs {
            let path = format!("devices/{}/{}", d.name, a.name);
            let differs = self
                .sys
                .values
                .get(&path)
                .is_none_or(|v| !same_value(v, &a.value));
            if differs && self.sys.writable.contains(&path) {
                self.step(path, a.value.clone());
            }
        }
    }

    // ---- targets ----

    fn drivers(&mut self, wanted: &Config) {
        for a in &wanted.attrs {
            if !self.sys.writable.contains(&a.name) {
                self.error(
                    a.line,
                    format!("SCST attribute '{}' is not supported by scst-rs", a.name),
                );
            } else if self
                .sys
                .values
                .get(&a.name)
                .is_none_or(|v| !same_value(v, &a.value))
            {
                self.step(a.name.clone(), a.value.clone());
            }
        }
        for d in &wanted.drivers {
            let Some(info) = self.sys.driver(&d.name).cloned() else {
                self.error(
                    d.line,
                    format!("no target driver '{}' (is its module loaded?)", d.name),
                );
                continue;
            };
            let base = format!("targets/{}", d.name);
            for t in &d.targets {
                self.target(wanted, &info, t);
            }
            // Driver attributes, `enabled` last.
            let cur_attrs = self.cur_driver(&d.name).attrs.clone();
            for a in d.attrs.iter().filter(|a| a.name != "enabled") {
                if info.list_attrs.contains(&a.name) {
                    if !holds(&cur_attrs, a) {
                        self.step(
                            format!("{base}/mgmt"),
                            format!("add_attribute {} {}", a.name, a.value),
                        );
                    }
                    continue;
                }
                let path = format!("{base}/{}", a.name);
                if !self.sys.writable.contains(&path) {
                    self.error(
                        a.line,
                        format!(
                            "target driver {} has no attribute '{}' that can be set",
                            d.name, a.name
                        ),
                    );
                } else if self
                    .sys
                    .values
                    .get(&path)
                    .is_none_or(|v| !same_value(v, &a.value))
                {
                    self.step(path, a.value.clone());
                }
            }
            if let Some(a) = attr(&d.attrs, "enabled") {
                let have = attr(&cur_attrs, "enabled").map(|c| c.value.clone());
                let path = format!("{base}/enabled");
                if !self.sys.writable.contains(&path) {
                    self.error(
                        a.line,
                        format!("target driver {} cannot be enabled or disabled", d.name),
                    );
                } else if have.is_none_or(|h| !same_value(&h, &a.value)) {
                    self.step(path, a.value.clone());
                }
            }
        }
    }

    // ---- device groups (ALUA) ----

    fn device_groups(&mut self, wanted: &Config) {
        for g in &wanted.device_groups {
            let base = format!("device_groups/{}", g.name);
            let have = self
                .cur
                .device_groups
                .iter()
                .find(|c| c.name == g.name)
                .cloned();
            if have.is_none() {
                self.step("device_groups/mgmt", format!("create {}", g.name));
            }
            let have = have.unwrap_or_default();
            for d in &g.devices {
                if have.devices.iter().any(|h| h.name == d.name) {
                    continue;
                }
                if !self.device_available(wanted, &d.name) {
                    self.error(
                        d.line,
                        format!("no device '{}' to add to device group {}", d.name, g.name),
                    );
                    continue;
                }
                let elsewhere = self.cur.device_groups.iter().find(|c| {
                    c.name != g.name
                        && c.devices.iter().any(|x| x.name == d.name)
                        && !wanted.device_groups.iter().any(|w| {
                            w.name == c.name && !w.devices.iter().any(|x| x.name == d.name)
                        })
                });
                if let Some(other) = elsewhere {
                    self.error(
                        d.line,
                        format!(
                            "device {} is in device group {} already",
                            d.name, other.name
                        ),
                    );
                    continue;
                }
                self.step(format!("{base}/devices/mgmt"), format!("add {}", d.name));
            }
            for tg in &g.target_groups {
                let tdir = format!("{base}/target_groups/{}", tg.name);
                let have_tg = have
                    .target_groups
                    .iter()
                    .find(|h| h.name == tg.name)
                    .cloned();
                if have_tg.is_none() {
                    self.step(
                        format!("{base}/target_groups/mgmt"),
                        format!("create {}", tg.name),
                    );
                }
                let have_tg = have_tg.unwrap_or_default();
                for name in crate::config::TARGET_GROUP_ATTRS {
                    let Some(a) = attr(&tg.attrs, name) else {
                        continue;
                    };
                    let valid = match name {
                        "group_id" => a.value.parse::<u32>().is_ok_and(|v| v <= 0xffff),
                        "preferred" => a.value == "0" || a.value == "1",
                        _ => [
                            "active",
                            "nonoptimized",
                            "standby",
                            "unavailable",
                            "offline",
                            "transitioning",
                        ]
                        .contains(&a.value.to_ascii_lowercase().as_str()),
                    };
                    if !valid {
                        self.error(
                            a.line,
                            format!("target group {}: bad {} '{}'", tg.name, name, a.value),
                        );
                    } else if !holds(&have_tg.attrs, a) {
                        self.step(format!("{tdir}/{name}"), a.value.clone());
                    }
                }
                for p in &tg.ports {
                    let have_port = have_tg.ports.iter().find(|h| h.name == p.name);
                    if have_port.is_none() {
                        self.step(format!("{tdir}/mgmt"), format!("add {}", p.name));
                    }
                    for a in &p.attrs {
                        if !have_port.is_some_and(|h| holds(&h.attrs, a)) {
                            self.step(format!("{tdir}/{}/{}", p.name, a.name), a.value.clone());
                        }
                    }
                }
            }
        }
    }

    fn target(&mut self, wanted: &Config, info: &crate::sysfs::DriverInfo, t: &Target) {
        let base = format!("targets/{}", info.name);
        let tdir = format!("{base}/{}", t.name);
        let existing = self.cur_target(&info.name, &t.name).cloned();
        let exists = existing.is_some();
        let cur = existing.unwrap_or_default();
        if !exists {
            self.step(format!("{base}/mgmt"), format!("add_target {}", t.name));
        }
        let mut seen: Vec<&str> = Vec::new();
        for a in t.attrs.iter().filter(|a| a.name != "enabled") {
            if info.target_list_attrs.contains(&a.name) {
                if !holds(&cur.attrs, a) {
                    self.step(
                        format!("{base}/mgmt"),
                        format!("add_target_attribute {} {} {}", t.name, a.name, a.value),
                    );
                }
                continue;
            }
            if a.name == "session_name" && info.sessions {
                if !cur
                    .attrs
                    .iter()
                    .any(|c| c.name == a.name && c.value == a.value)
                {
                    self.step(
                        format!("{base}/mgmt"),
                        format!("add_session {} {}", t.name, a.value),
                    );
                }
                continue;
            }
            if seen.contains(&a.name.as_str()) {
                self.error(a.line, format!("attribute {} given twice", a.name));
            }
            seen.push(&a.name);
            let path = format!("{tdir}/{}", a.name);
            let known = if exists {
                self.sys.writable.contains(&path)
            } else {
                CORE_TARGET_ATTRS.contains(&a.name.as_str()) || info.target_attrs.contains(&a.name)
            };
            if !known {
                self.error(
                    a.line,
                    format!(
                        "target attribute '{}' cannot be set on {} targets",
                        a.name, info.name
                    ),
                );
                continue;
            }
            let have = self.sys.values.get(&path).filter(|_| exists);
            if have.is_none_or(|v| !same_value(v, &a.value)) {
                self.step(path, a.value.clone());
            }
        }
        self.luns(wanted, &format!("{tdir}/luns/mgmt"), &t.luns, &cur.luns);
        for g in &t.groups {
            let gdir = format!("{tdir}/ini_groups/{}", g.name);
            let cur_group = cur.groups.iter().find(|c| c.name == g.name).cloned();
            if cur_group.is_none() {
                self.step(
                    format!("{tdir}/ini_groups/mgmt"),
                    format!("create {}", g.name),
                );
            }
            let cg = cur_group.unwrap_or_default();
            self.luns(wanted, &format!("{gdir}/luns/mgmt"), &g.luns, &cg.luns);
            for i in &g.initiators {
                if cg.initiators.iter().any(|c| c.name == i.name) {
                    continue;
                }
                let from: Option<&Group> = cur
                    .groups
                    .iter()
                    .find(|c| c.name != g.name && c.initiators.iter().any(|x| x.name == i.name));
                match from {
                    Some(src) => self.step(
                        format!("{tdir}/ini_groups/{}/initiators/mgmt", src.name),
                        format!("move {} {}", i.name, g.name),
                    ),
                    None => self.step(format!("{gdir}/initiators/mgmt"), format!("add {}", i.name)),
                }
            }
        }
        if let Some(a) = attr(&t.attrs, "enabled") {
            let have = attr(&cur.attrs, "enabled").map(|c| c.value.clone());
            if have.is_none_or(|h| !same_value(&h, &a.value)) {
                self.step(format!("{tdir}/enabled"), a.value.clone());
            }
        }
        // What the target is now.
        let mut now = t.clone();
        now.line = 0;
        let drv = self.cur_driver(&info.name);
        drv.targets.retain(|x| x.name != t.name);
        drv.targets.push(now);
    }

    fn luns(&mut self, wanted: &Config, mgmt: &str, want: &[Lun], have: &[Lun]) {
        for l in want {
            for a in &l.attrs {
                let known = self.sys.lun_params.is_empty() || self.sys.lun_params.contains(&a.name);
                if !known {
                    self.error(
                        a.line,
                        format!(
                            "LUN attribute '{}' is not one of: {}",
                            a.name,
                            self.sys.lun_params.join(", ")
                        ),
                    );
                }
            }
            if !self.device_available(wanted, &l.device) {
                self.error(
                    l.line,
                    format!(
                        "LUN {}: no device {} (in the file or running)",
                        l.number, l.device
                    ),
                );
                continue;
            }
            let params = mgmt_params(l.attrs.iter().map(|a| (a.name.as_str(), a.value.as_str())));
            let tail = format!("{} {}{params}", l.device, l.number);
            match have.iter().find(|h| h.number == l.number) {
                None => self.step(mgmt, format!("add {tail}")),
                Some(h) => {
                    let ro =
                        |attrs: &[Attr]| attr(attrs, "read_only").is_some_and(|a| a.value == "1");
                    if h.device != l.device || ro(&h.attrs) != ro(&l.attrs) {
                        self.step(mgmt, format!("replace {tail}"));
                    }
                }
            }
        }
    }
}

/// The words `del_attribute`/`del_target_attribute` take to name one value
/// of a list: a CHAP user by its name, anything else whole.
fn list_key<'a>(name: &str, value: &'a str) -> &'a str {
    if name.ends_with("User") {
        value.split_whitespace().next().unwrap_or(value)
    } else {
        value
    }
}

/// The writes that remove every target, group, LUN and device, and turn
/// the drivers off (`-clear_config`).
pub fn clear(sys: &System) -> Vec<Step> {
    let mut steps: Vec<Step> = sys
        .config
        .drivers
        .iter()
        .filter(|d| attr(&d.attrs, "enabled").is_some_and(|a| a.value == "1"))
        .map(|d| Step {
            path: format!("targets/{}/enabled", d.name),
            text: "0".into(),
        })
        .collect();
    // An empty configuration only removes: it cannot be refused.
    steps.extend(plan(sys, &Config::default(), true).unwrap_or_default());
    steps
}

/// The writes that turn the running system into `wanted`.
pub fn plan(sys: &System, wanted: &Config, force: bool) -> Result<Vec<Step>, Vec<ConfigError>> {
    let mut p = Planner {
        sys,
        cur: sys.config.clone(),
        steps: Vec::new(),
        errors: Vec::new(),
        force,
    };
    if force {
        p.remove_unwanted(wanted);
    }
    p.devices(wanted);
    p.drivers(wanted);
    p.device_groups(wanted);
    if p.errors.is_empty() {
        Ok(p.steps)
    } else {
        p.errors.sort_by_key(|e| e.line);
        p.errors.dedup();
        Err(p.errors)
    }
}
