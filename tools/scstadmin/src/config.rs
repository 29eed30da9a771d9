// SPDX-License-Identifier: GPL-2.0

//! The configuration SCST's `scst.conf` describes: handlers and their
//! devices, target drivers with their targets, LUNs, initiator groups and
//! attributes. Read from a file ([`Config::parse`]), from the running
//! system ([`crate::sysfs`]), and written back ([`Config::to_text`]).

use crate::syntax::{self, quote, Node};
use std::fmt;

/// Largest LUN number the core takes.
pub const MAX_LUN: u64 = 16383;

/// An attribute line: `name value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub value: String,
    /// Line in the file it came from (0: the running system).
    pub line: usize,
}

impl Attr {
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            line: 0,
        }
    }
}

/// `DEVICE name { attributes }` inside a `HANDLER` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

/// `HANDLER name { DEVICE ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub devices: Vec<Device>,
    pub line: usize,
}

/// `LUN number device [{ attributes }]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lun {
    pub number: u64,
    pub device: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

/// `INITIATOR name` inside a `GROUP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Initiator {
    pub name: String,
    pub line: usize,
}

/// `GROUP name { LUN ...; INITIATOR ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub luns: Vec<Lun>,
    pub initiators: Vec<Initiator>,
    pub line: usize,
}

/// `TARGET name { attributes; LUN ...; GROUP ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub luns: Vec<Lun>,
    pub groups: Vec<Group>,
    pub line: usize,
}

/// `TARGET_DRIVER name { attributes; TARGET ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub targets: Vec<Target>,
    pub line: usize,
}

/// `TARGET name [{ rel_tgt_id N }]` inside a `TARGET_GROUP`: a target of
/// this system, or another node's target port with its relative id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPort {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

/// `TARGET_GROUP name { group_id; preferred; state; TARGET ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub ports: Vec<GroupPort>,
    pub line: usize,
}

/// `DEVICE_GROUP name { DEVICE ...; TARGET_GROUP ... }` (ALUA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGroup {
    pub name: String,
    /// Device names, with their lines.
    pub devices: Vec<Initiator>,
    pub target_groups: Vec<TargetGroup>,
    pub line: usize,
}

/// The attributes of a target group, in the order they are applied
/// (`state` last: a group's id is known when its state is announced).
pub const TARGET_GROUP_ATTRS: [&str; 3] = ["group_id", "preferred", "state"];

/// A whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Attributes of the SCST core itself (top level of the file).
    pub attrs: Vec<Attr>,
    pub handlers: Vec<Handler>,
    pub drivers: Vec<Driver>,
    pub device_groups: Vec<DeviceGroup>,
}

/// Something in a file that cannot be applied, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

/// Collects every error of a file, so that one run names them all.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, line: usize, reason: impl Into<String>) {
        self.0.push(ConfigError {
            line,
            reason: reason.into(),
        });
    }
}

/// The statement's keyword when it is one of the grammar's block keywords
/// (all upper case, as SCST writes them); attributes are anything else.
fn keyword(node: &Node) -> Option<&str> {
    let w = node.words.first()?.as_str();
    let upper = w.len() > 1 && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    upper.then_some(w)
}

/// The single name after a keyword (`DEVICE disk1`).
fn name_of(node: &Node, errors: &mut Errors) -> Option<String> {
    match node.words.as_slice() {
        [_, name] => Some(name.clone()),
        [kw] => {
            errors.add(node.line, format!("{kw} needs a name"));
            None
        }
        [kw, _, extra, ..] => {
            errors.add(
                node.line,
                format!("{kw}: unexpected '{extra}' after the name"),
            );
            None
        }
        [] => None,
    }
}

/// An attribute statement: a name and at least one word of value, no block.
fn attr_of(node: &Node, errors: &mut Errors) -> Option<Attr> {
    let name = node.words.first()?;
    if node.block.is_some() {
        errors.add(node.line, format!("'{name}' is not a block keyword here"));
        return None;
    }
    if node.words.len() < 2 {
        errors.add(node.line, format!("attribute '{name}' has no value"));
        return None;
    }
    Some(Attr {
        name: name.clone(),
        value: node.words[1..].join(" "),
        line: node.line,
    })
}

fn block(node: &Node) -> &[Node] {
    node.block.as_deref().unwrap_or(&[])
}

fn misplaced(node: &Node, kw: &str, within: &str, errors: &mut Errors) {
    errors.add(node.line, format!("{kw} is not allowed {within}"));
}

fn parse_lun(node: &Node, errors: &mut Errors) -> Option<Lun> {
    let (number, device) = match node.words.as_slice() {
        [_, n, d] => (n, d),
        _ => {
            errors.add(node.line, "LUN takes a number and a device: LUN 0 disk1");
            return None;
        }
    };
    let Some(number) = number.parse::<u64>().ok().filter(|n| *n <= MAX_LUN) else {
        errors.add(
            node.line,
            format!("LUN '{number}': not a number from 0 to {MAX_LUN}"),
        );
        return None;
    };
    let mut attrs = Vec::new();
    for n in block(node) {
        match keyword(n) {
            Some(kw) => misplaced(n, kw, "inside a LUN", errors),
            None => attrs.extend(attr_of(n, errors)),
        }
    }
    Some(Lun {
        number,
        device: device.clone(),
        attrs,
        line: node.line,
    })
}

fn add_lun(luns: &mut Vec<Lun>, lun: Lun, errors: &mut Errors) {
    if let Some(first) = luns.iter().find(|l| l.number == lun.number) {
        errors.add(
            lun.line,
            format!(
                "LUN {} given twice (first on line {})",
                lun.number, first.line
            ),
        );
    } else {
        luns.push(lun);
    }
}

fn parse_group(node: &Node, errors: &mut Errors) -> Option<Group> {
    let mut group = Group {
        name: name_of(node, errors)?,
        line: node.line,
        ..Group::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("LUN") => {
                if let Some(lun) = parse_lun(n, errors) {
                    add_lun(&mut group.luns, lun, errors);
                }
            }
            Some("INITIATOR") => {
                if n.block.is_some() {
                    errors.add(n.line, "INITIATOR takes no block");
                }
                if let Some(name) = name_of(n, errors) {
                    group.initiators.push(Initiator { name, line: n.line });
                }
            }
            Some(kw) => misplaced(n, kw, "inside a GROUP", errors),
            None => {
                if let Some(a) = attr_of(n, errors) {
                    errors.add(
                        a.line,
                        format!("initiator groups have no attribute '{}'", a.name),
                    );
                }
            }
        }
    }
    Some(group)
}

fn parse_target(node: &Node, errors: &mut Errors) -> Option<Target> {
    let mut target = Target {
        name: name_of(node, errors)?,
        line: node.line,
        ..Target::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("LUN") => {
                if let Some(lun) = parse_lun(n, errors) {
                    add_lun(&mut target.luns, lun, errors);
                }
            }
            Some("GROUP") => {
                if let Some(g) = parse_group(n, errors) {
                    if let Some(first) = target.groups.iter().find(|x| x.name == g.name) {
                        errors.add(
                            g.line,
                            format!(
                                "GROUP {} given twice (first on line {})",
                                g.name, first.line
                            ),
                        );
                    } else {
                        target.groups.push(g);
                    }
                }
            }
            Some(kw) => misplaced(n, kw, "inside a TARGET", errors),
            None => target.attrs.extend(attr_of(n, errors)),
        }
    }
    // An initiator name belongs to one group of a target.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for i in target.groups.iter().flat_map(|g| &g.initiators) {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == i.name) {
            errors.add(
                i.line,
                format!(
                    "initiator {} is already in a group of this target (line {})",
                    i.name, first
                ),
            );
        } else {
            seen.push((&i.name, i.line));
        }
    }
    Some(target)
}

fn parse_driver(node: &Node, errors: &mut Errors) -> Option<Driver> {
    let mut driver = Driver {
        name: name_of(node, errors)?,
        line: node.line,
        ..Driver::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("TARGET") => {
                if let Some(t) = parse_target(n, errors) {
                    if let Some(first) = driver.targets.iter().find(|x| x.name == t.name) {
                        errors.add(
                            t.line,
                            format!(
                                "TARGET {} given twice (first on line {})",
                                t.name, first.line
                            ),
                        );
                    } else {
                        driver.targets.push(t);
                    }
                }
            }
            Some(kw) => misplaced(n, kw, "inside a TARGET_DRIVER", errors),
            None => driver.attrs.extend(attr_of(n, errors)),
        }
    }
    Some(driver)
}

fn parse_group_port(node: &Node, errors: &mut Errors) -> Option<GroupPort> {
    let mut port = GroupPort {
        name: name_of(node, errors)?,
        line: node.line,
        ..GroupPort::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some(kw) => misplaced(n, kw, "inside a target group's TARGET", errors),
            None => {
                if let Some(a) = attr_of(n, errors) {
                    if a.name == "rel_tgt_id" {
                        port.attrs.push(a);
                    } else {
                        errors.add(
                            a.line,
                            format!("a target group's TARGET has no attribute '{}'", a.name),
                        );
                    }
                }
            }
        }
    }
    Some(port)
}

fn parse_target_group(node: &Node, errors: &mut Errors) -> Option<TargetGroup> {
    let mut group = TargetGroup {
        name: name_of(node, errors)?,
        line: node.line,
        ..TargetGroup::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("TARGET") => {
                if let Some(p) = parse_group_port(n, errors) {
                    group.ports.push(p);
                }
            }
            Some(kw) => misplaced(n, kw, "inside a TARGET_GROUP", errors),
            None => {
                if let Some(a) = attr_of(n, errors) {
                    if TARGET_GROUP_ATTRS.contains(&a.name.as_str()) {
                        group.attrs.push(a);
                    } else {
                        errors.add(
                            a.line,
                            format!("target groups have no attribute '{}'", a.name),
                        );
                    }
                }
            }
        }
    }
    Some(group)
}

fn parse_device_group(node: &Node, errors: &mut Errors) -> Option<DeviceGroup> {
    let mut group = DeviceGroup {
        name: name_of(node, errors)?,
        line: node.line,
        ..DeviceGroup::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("DEVICE") => {
                if n.block.is_some() {
                    errors.add(n.line, "a device group's DEVICE takes no block");
                }
                if let Some(name) = name_of(n, errors) {
                    group.devices.push(Initiator { name, line: n.line });
                }
            }
            Some("TARGET_GROUP") => {
                if let Some(tg) = parse_target_group(n, errors) {
                    if let Some(first) = group.target_groups.iter().find(|x| x.name == tg.name) {
                        errors.add(
                            tg.line,
                            format!(
                                "TARGET_GROUP {} given twice (first on line {})",
                                tg.name, first.line
                            ),
                        );
                    } else {
                        group.target_groups.push(tg);
                    }
                }
            }
            Some(kw) => misplaced(n, kw, "inside a DEVICE_GROUP", errors),
            None => {
                if let Some(a) = attr_of(n, errors) {
                    errors.add(
                        a.line,
                        format!("device groups have no attribute '{}'", a.name),
                    );
                }
            }
        }
    }
    // A target is in one target group of a device group.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for p in group.target_groups.iter().flat_map(|g| &g.ports) {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == p.name) {
            errors.add(
                p.line,
                format!(
                    "target {} is already in a target group of this device group (line {})",
                    p.name, first
                ),
            );
        } else {
            seen.push((&p.name, p.line));
        }
    }
    Some(group)
}

fn parse_handler(node: &Node, errors: &mut Errors) -> Option<Handler> {
    let mut handler = Handler {
        name: name_of(node, errors)?,
        line: node.line,
        ..Handler::default()
    };
    for n in block(node) {
        match keyword(n) {
            Some("DEVICE") => {
                let Some(name) = name_of(n, errors) else {
                    continue;
                };
                let mut device = Device {
                    name,
                    line: n.line,
                    ..Device::default()
                };
                for a in block(n) {
                    match keyword(a) {
                        Some(kw) => misplaced(a, kw, "inside a DEVICE", errors),
                        None => device.attrs.extend(attr_of(a, errors)),
                    }
                }
                handler.devices.push(device);
            }
            Some(kw) => misplaced(n, kw, "inside a HANDLER", errors),
            None => {
                if let Some(a) = attr_of(n, errors) {
                    errors.add(
                        a.line,
                        format!(
                            "handler attribute '{}' cannot be set (scst-rs handlers have none)",
                            a.name
                        ),
                    );
                }
            }
        }
    }
    Some(handler)
}

impl Config {
    /// Reads a configuration file; every error it has is returned, each
    /// with its line.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let nodes = syntax::parse(text).map_err(|e| {
            vec![ConfigError {
                line: e.line,
                reason: e.reason,
            }]
        })?;
        let mut errors = Errors::default();
        let mut config = Config::default();
        for n in &nodes {
            match keyword(n) {
                Some("HANDLER") => {
                    if let Some(h) = parse_handler(n, &mut errors) {
                        match config.handlers.iter_mut().find(|x| x.name == h.name) {
                            // SCST's files may name a handler twice.
                            Some(first) => first.devices.extend(h.devices),
                            None => config.handlers.push(h),
                        }
                    }
                }
                Some("TARGET_DRIVER") => {
                    if let Some(d) = parse_driver(n, &mut errors) {
                        if let Some(first) = config.drivers.iter().find(|x| x.name == d.name) {
                            errors.add(
                                d.line,
                                format!(
                                    "TARGET_DRIVER {} given twice (first on line {})",
                                    d.name, first.line
                                ),
                            );
                        } else {
                            config.drivers.push(d);
                        }
                    }
                }
                Some("DEVICE_GROUP") => {
                    if let Some(g) = parse_device_group(n, &mut errors) {
                        if let Some(first) = config.device_groups.iter().find(|x| x.name == g.name)
                        {
                            errors.add(
                                g.line,
                                format!(
                                    "DEVICE_GROUP {} given twice (first on line {})",
                                    g.name, first.line
                                ),
                            );
                        } else {
                            config.device_groups.push(g);
                        }
                    }
                }
                Some(kw) => misplaced(n, kw, "at the top level", &mut errors),
                None => config.attrs.extend(attr_of(n, &mut errors)),
            }
        }
        // A device name is unique across handlers.
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for d in config.handlers.iter().flat_map(|h| &h.devices) {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == d.name) {
                errors.add(
                    d.line,
                    format!("DEVICE {} given twice (first on line {})", d.name, first),
                );
            } else {
                seen.push((&d.name, d.line));
            }
        }
        // A device is in one device group.
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for d in config.device_groups.iter().flat_map(|g| &g.devices) {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == d.name) {
                errors.add(
                    d.line,
                    format!(
                        "device {} is already in a device group (line {})",
                        d.name, first
                    ),
                );
            } else {
                seen.push((&d.name, d.line));
            }
        }
        if errors.0.is_empty() {
            Ok(config)
        } else {
            errors.0.sort_by_key(|e| e.line);
            Err(errors.0)
        }
    }

    /// The device named `name`, with its handler.
    pub fn device(&self, name: &str) -> Option<(&Handler, &Device)> {
        self.handlers
            .iter()
            .find_map(|h| h.devices.iter().find(|d| d.name == name).map(|d| (h, d)))
    }

    /// The configuration as `scst.conf` text, in SCST's layout.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str("# scst.conf written by scstadmin (scst-rs)\n");
        for a in &self.attrs {
            write_attr(&mut out, 0, a);
        }
        for h in &self.handlers {
            out.push_str(&format!("\nHANDLER {} {{\n", quote(&h.name)));
            for d in &h.devices {
                write_block_start(&mut out, 1, &format!("DEVICE {}", quote(&d.name)), &d.attrs);
                for a in &d.attrs {
                    write_attr(&mut out, 2, a);
                }
                write_block_end(&mut out, 1, &d.attrs);
            }
            out.push_str("}\n");
        }
        for d in &self.drivers {
            out.push_str(&format!("\nTARGET_DRIVER {} {{\n", quote(&d.name)));
            for a in &d.attrs {
                write_attr(&mut out, 1, a);
            }
            for t in &d.targets {
                out.push_str(&format!("\n\tTARGET {} {{\n", quote(&t.name)));
                for a in &t.attrs {
                    write_attr(&mut out, 2, a);
                }
                if !t.luns.is_empty() {
                    out.push('\n');
                }
                for l in &t.luns {
                    write_lun(&mut out, 2, l);
                }
                for g in &t.groups {
                    out.push_str(&format!("\n\t\tGROUP {} {{\n", quote(&g.name)));
                    for l in &g.luns {
                        write_lun(&mut out, 3, l);
                    }
                    if !g.luns.is_empty() && !g.initiators.is_empty() {
                        out.push('\n');
                    }
                    for i in &g.initiators {
                        out.push_str(&format!("\t\t\tINITIATOR {}\n", quote(&i.name)));
                    }
                    out.push_str("\t\t}\n");
                }
                out.push_str("\t}\n");
            }
            out.push_str("}\n");
        }
        for g in &self.device_groups {
            out.push_str(&format!("\nDEVICE_GROUP {} {{\n", quote(&g.name)));
            for d in &g.devices {
                out.push_str(&format!("\tDEVICE {}\n", quote(&d.name)));
            }
            for tg in &g.target_groups {
                out.push_str(&format!("\n\tTARGET_GROUP {} {{\n", quote(&tg.name)));
                for a in &tg.attrs {
                    write_attr(&mut out, 2, a);
                }
                for p in &tg.ports {
                    write_block_start(&mut out, 2, &format!("TARGET {}", quote(&p.name)), &p.attrs);
                    for a in &p.attrs {
                        write_attr(&mut out, 3, a);
                    }
                    write_block_end(&mut out, 2, &p.attrs);
                }
                out.push_str("\t}\n");
            }
            out.push_str("}\n");
        }
        out
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

fn write_attr(out: &mut String, depth: usize, a: &Attr) {
    indent(out, depth);
    out.push_str(&format!("{} {}\n", a.name, quote(&a.value)));
}

fn write_block_start(out: &mut String, depth: usize, header: &str, attrs: &[Attr]) {
    indent(out, depth);
    out.push_str(header);
    out.push_str(if attrs.is_empty() { "\n" } else { " {\n" });
}

fn write_block_end(out: &mut String, depth: usize, attrs: &[Attr]) {
    if !attrs.is_empty() {
        indent(out, depth);
        out.push_str("}\n");
    }
}

fn write_lun(out: &mut String, depth: usize, l: &Lun) {
    let header = format!("LUN {} {}", l.number, quote(&l.device));
    write_block_start(out, depth, &header, &l.attrs);
    for a in &l.attrs {
        write_attr(out, depth + 1, a);
    }
    write_block_end(out, depth, &l.attrs);
}
