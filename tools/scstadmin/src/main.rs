// SPDX-License-Identifier: GPL-2.0

//! `scstadmin`: SCST's command line, for scst-rs.

use scstadmin::apply::{apply, Outcome};
use scstadmin::config::Config;
use scstadmin::plan::{mgmt_params, plan, Step};
use scstadmin::sysfs::{Sysfs, System, DEFAULT_ROOT};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: scstadmin <command> [options]

Configuration files (SCST's scst.conf grammar):
  -config FILE           apply FILE: write only what differs from the running
                         system; with -force also remove what FILE lacks and
                         re-create devices whose fixed attributes differ
  -check_config FILE     check FILE against the running system and print the
                         sysfs writes -config would make, changing nothing
  -write_config FILE     save the running configuration to FILE
  -clear_config          remove every target, group, LUN and device (needs -force)

Listing:
  -list_handler [HANDLER]       -list_device [DEVICE]
  -list_target [TARGET] [-driver DRIVER]
  -list_group [GROUP] -driver DRIVER -target TARGET
  -list_sessions                -list_dev_attr DEVICE
  -list_tgt_attr TARGET -driver DRIVER
  -list_drv_attr DRIVER

Changing one object:
  -open_dev DEVICE -handler HANDLER -attributes a=v,...
  -close_dev DEVICE -handler HANDLER
  -set_dev_attr DEVICE -attributes a=v,...
  -set_drv_attr DRIVER -attributes a=v,...
  -set_tgt_attr TARGET -driver DRIVER -attributes a=v,...
  -add_target TARGET -driver DRIVER     -rem_target TARGET -driver DRIVER
  -enable_target TARGET -driver DRIVER  -disable_target TARGET -driver DRIVER
  -add_group GROUP -driver DRIVER -target TARGET
  -rem_group GROUP -driver DRIVER -target TARGET
  -add_init INITIATOR -driver DRIVER -target TARGET -group GROUP
  -rem_init INITIATOR -driver DRIVER -target TARGET -group GROUP
  -move_init INITIATOR -driver DRIVER -target TARGET -group GROUP -to GROUP
  -add_lun LUN -driver DRIVER -target TARGET [-group GROUP] -device DEVICE
           [-attributes read_only=1]
  -rem_lun LUN -driver DRIVER -target TARGET [-group GROUP]

Options:
  -force        with -config and -clear_config: remove what the file lacks
  -noprompt     do not ask before removing anything
  -root DIR     SCST's sysfs tree (default /sys/kernel/scst_tgt)
  -h, -help     this text
";

/// The parsed command line: the command with its argument, and options.
struct Args {
    command: String,
    arg: Option<String>,
    opts: BTreeMap<String, String>,
    force: bool,
    noprompt: bool,
}

const COMMANDS_WITH_ARG: &[&str] = &[
    "config",
    "check_config",
    "write_config",
    "list_dev_attr",
    "list_tgt_attr",
    "list_drv_attr",
    "open_dev",
    "close_dev",
    "set_dev_attr",
    "set_drv_attr",
    "set_tgt_attr",
    "add_target",
    "rem_target",
    "enable_target",
    "disable_target",
    "add_group",
    "rem_group",
    "add_init",
    "rem_init",
    "move_init",
    "add_lun",
    "rem_lun",
];
const COMMANDS_OPTIONAL_ARG: &[&str] =
    &["list_handler", "list_device", "list_target", "list_group"];
const COMMANDS_NO_ARG: &[&str] = &["clear_config", "list_sessions"];
const OPTIONS: &[&str] = &[
    "driver",
    "target",
    "group",
    "device",
    "handler",
    "attributes",
    "to",
    "root",
];

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        arg: None,
        opts: BTreeMap::new(),
        force: false,
        noprompt: false,
    };
    let mut i = 0;
    while i < argv.len() {
        let word = argv[i].trim_start_matches('-');
        if !argv[i].starts_with('-') {
            return Err(format!("unexpected '{}'", argv[i]));
        }
        let next = argv.get(i + 1).filter(|n| !n.starts_with('-')).cloned();
        match word {
            "force" => args.force = true,
            "noprompt" => args.noprompt = true,
            w if OPTIONS.contains(&w) => {
                let v = next.ok_or_else(|| format!("-{w} needs a value"))?;
                args.opts.insert(w.to_string(), v);
                i += 1;
            }
            w if COMMANDS_WITH_ARG.contains(&w)
                || COMMANDS_OPTIONAL_ARG.contains(&w)
                || COMMANDS_NO_ARG.contains(&w) =>
            {
                if !args.command.is_empty() {
                    return Err(format!("two commands: -{} and -{w}", args.command));
                }
                args.command = w.to_string();
                if COMMANDS_WITH_ARG.contains(&w) {
                    args.arg = Some(next.ok_or_else(|| format!("-{w} needs an argument"))?);
                    i += 1;
                } else if COMMANDS_OPTIONAL_ARG.contains(&w) && next.is_some() {
                    args.arg = next;
                    i += 1;
                }
            }
            _ => return Err(format!("unknown option '{}'", argv[i])),
        }
        i += 1;
    }
    if args.command.is_empty() {
        return Err("no command given".into());
    }
    Ok(args)
}

impl Args {
    fn opt(&self, name: &str) -> Result<&str, String> {
        self.opts
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("-{} needs -{name}", self.command))
    }

    fn arg(&self) -> &str {
        self.arg.as_deref().unwrap_or("")
    }

    /// `-attributes a=v,b=w` as pairs.
    fn attributes(&self) -> Result<Vec<(String, String)>, String> {
        let Some(text) = self.opts.get("attributes") else {
            return Ok(Vec::new());
        };
        text.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| format!("-attributes: '{p}' is not name=value"))
            })
            .collect()
    }

    fn target_dir(&self) -> Result<String, String> {
        Ok(format!(
            "targets/{}/{}",
            self.opt("driver")?,
            self.opt("target")?
        ))
    }
}

/// Asks before a change that removes something, unless -noprompt.
fn confirm(args: &Args, what: &str) -> Result<(), String> {
    if args.noprompt {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{what}: add -noprompt to confirm without a terminal"
        ));
    }
    print!("{what}: this may remove configuration in use. Continue? (y/[n]) ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim().eq_ignore_ascii_case("y") {
        Ok(())
    } else {
        Err("not confirmed".into())
    }
}

fn print_step(root: &str, s: &Step) {
    println!("echo '{}' > {}/{}", s.text, root, s.path);
}

/// Applies `wanted` (or prints what it would write when `check`).
fn run_config(args: &Args, fs: &Sysfs, wanted: &Config, check: bool) -> Result<(), String> {
    let sys = fs.system().map_err(|e| e.to_string())?;
    let steps = plan(&sys, wanted, args.force).map_err(|errors| {
        let mut text = String::from("the configuration cannot be applied; nothing was changed:");
        for e in errors {
            text.push_str(&format!("\n  {e}"));
        }
        text
    })?;
    let root = fs.root().display().to_string();
    if check {
        for s in &steps {
            print_step(&root, s);
        }
        println!("{} write(s) to apply", steps.len());
        return Ok(());
    }
    if steps.is_empty() {
        println!("The running configuration already matches.");
        return Ok(());
    }
    if args.force && steps.iter().any(|s| s.text.starts_with("del")) {
        confirm(args, "-force removes what the file lacks")?;
    }
    finish(fs, &sys, &steps)
}

/// Makes the writes, reporting each; on a refusal, says what was applied
/// and how the system was put back.
fn finish(fs: &Sysfs, sys: &System, steps: &[Step]) -> Result<(), String> {
    let root = fs.root().display().to_string();
    match apply(fs, sys, steps, &mut |s| print_step(&root, s)) {
        Outcome::Applied(n) => {
            println!("{n} write(s) applied.");
            Ok(())
        }
        Outcome::Failed {
            applied,
            error,
            restored,
        } => {
            let mut text = format!("{error}\n");
            text.push_str(&format!(
                "{} write(s) had been applied before it",
                applied.len()
            ));
            match restored {
                Ok(()) => text.push_str(", and were undone: the system is as it was."),
                Err(e) => {
                    text.push_str(":\n");
                    for s in &applied {
                        text.push_str(&format!("  echo '{}' > {}/{}\n", s.text, root, s.path));
                    }
                    text.push_str(&format!("undoing them failed: {e}"));
                }
            }
            Err(text)
        }
    }
}

/// Replaces `file` with `text` whole or not at all (written beside it,
/// then renamed). The file holds CHAP secrets, which sysfs shows to root
/// only: a new file is readable by its owner only; an existing one keeps
/// its mode.
fn write_whole(file: &str, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(file).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let tmp = format!("{file}.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, file)
}

/// One management write, reported as SCST's scstadmin does.
fn one(fs: &Sysfs, path: &str, text: &str) -> Result<(), String> {
    fs.write(path, text).map_err(|e| e.to_string())
}

fn list(fs: &Sysfs, args: &Args) -> Result<(), String> {
    let sys = fs.system().map_err(|e| e.to_string())?;
    let c = &sys.config;
    match args.command.as_str() {
        "list_handler" => {
            println!("\tHandler");
            println!("\t-------------------------");
            for h in sys
                .handlers
                .iter()
                .filter(|h| args.arg.is_none() || h.name == args.arg())
            {
                println!("\t{}", h.name);
            }
        }
        "list_device" => {
            println!("\t{:<24} Device", "Handler");
            println!("\t{}", "-".repeat(48));
            for h in &c.handlers {
                for d in h
                    .devices
                    .iter()
                    .filter(|d| args.arg.is_none() || d.name == args.arg())
                {
                    println!("\t{:<24} {}", h.name, d.name);
                }
            }
        }
        "list_target" => {
            println!("\t{:<24} Target", "Driver");
            println!("\t{}", "-".repeat(48));
            for d in c
                .drivers
                .iter()
                .filter(|d| args.opts.get("driver").is_none_or(|n| *n == d.name))
            {
                for t in d
                    .targets
                    .iter()
                    .filter(|t| args.arg.is_none() || t.name == args.arg())
                {
                    println!("\t{:<24} {}", d.name, t.name);
                }
            }
        }
        "list_group" => {
            let (drv, tgt) = (args.opt("driver")?, args.opt("target")?);
            let t = c
                .drivers
                .iter()
                .find(|d| d.name == drv)
                .and_then(|d| d.targets.iter().find(|t| t.name == tgt))
                .ok_or_else(|| format!("no target {tgt} of driver {drv}"))?;
            for g in t
                .groups
                .iter()
                .filter(|g| args.arg.is_none() || g.name == args.arg())
            {
                println!("Group: {}", g.name);
                println!("\tAssigned LUNs:");
                for l in &g.luns {
                    println!("\t\t{} {}", l.number, l.device);
                }
                println!("\tAssigned Initiators:");
                for i in &g.initiators {
                    println!("\t\t{}", i.name);
                }
            }
        }
        "list_sessions" => {
            for d in &c.drivers {
                for t in &d.targets {
                    let dir = format!("targets/{}/{}/sessions", d.name, t.name);
                    let Ok(entries) = std::fs::read_dir(fs.root().join(&dir)) else {
                        continue;
                    };
                    let mut names: Vec<String> = entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect();
                    names.sort();
                    for s in names {
                        let ini = fs
                            .read(&format!("{dir}/{s}/initiator_name"))
                            .unwrap_or_default();
                        println!("Driver/Target: {}/{}", d.name, t.name);
                        println!("\tSession: {s}");
                        println!("\t\tinitiator_name: {}", ini.trim());
                    }
                }
            }
        }
        cmd => {
            let dir = match cmd {
                "list_dev_attr" => format!("devices/{}", args.arg()),
                "list_tgt_attr" => format!("targets/{}/{}", args.opt("driver")?, args.arg()),
                _ => format!("targets/{}", args.arg()),
            };
            let mut rows: Vec<(&String, &String, bool)> = sys
                .values
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(&format!("{dir}/"))
                        .is_some_and(|n| !n.contains('/'))
                })
                .map(|(p, v)| (p, v, sys.writable.contains(p)))
                .collect();
            if rows.is_empty() && std::fs::metadata(fs.root().join(&dir)).is_err() {
                return Err(format!("{dir} does not exist"));
            }
            rows.sort();
            println!("\t{:<28} {:<40} Writable", "Attribute", "Value");
            println!("\t{}", "-".repeat(78));
            for (p, v, w) in rows {
                let name = p.rsplit('/').next().unwrap_or(p);
                println!(
                    "\t{:<28} {:<40} {}",
                    name,
                    v.replace('\n', ", "),
                    if w { "Yes" } else { "No" }
                );
            }
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let root = args.opts.get("root").map_or(DEFAULT_ROOT, String::as_str);
    let fs = Sysfs::new(root);
    match args.command.as_str() {
        "config" | "check_config" => {
            let file = args.arg();
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let wanted = Config::parse(&text).map_err(|errors| {
                let mut t =
                    format!("{file}: the configuration cannot be applied; nothing was changed:");
                for e in errors {
                    t.push_str(&format!("\n  {e}"));
                }
                t
            })?;
            run_config(args, &fs, &wanted, args.command == "check_config")
        }
        "write_config" => {
            let sys = fs.system().map_err(|e| e.to_string())?;
            let file = args.arg();
            let text = sys.config.to_text();
            write_whole(file, &text).map_err(|e| format!("{file}: {e}"))?;
            println!("Configuration written to {file}.");
            Ok(())
        }
        "clear_config" => {
            if !args.force {
                return Err("-clear_config removes everything: add -force".into());
            }
            confirm(args, "-clear_config")?;
            let sys = fs.system().map_err(|e| e.to_string())?;
            finish(&fs, &sys, &scstadmin::plan::clear(&sys))
        }
        c if c.starts_with("list_") => list(&fs, args),
        "open_dev" => {
            let h = args.opt("handler")?;
            let attrs = args.attributes()?;
            let params = mgmt_params(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            one(
                &fs,
                &format!("handlers/{h}/mgmt"),
                &format!("add_device {}{params}", args.arg()),
            )
        }
        "close_dev" => {
            confirm(args, "-close_dev")?;
            one(
                &fs,
                &format!("handlers/{}/mgmt", args.opt("handler")?),
                &format!("del_device {}", args.arg()),
            )
        }
        "set_dev_attr" | "set_drv_attr" | "set_tgt_attr" => {
            let dir = match args.command.as_str() {
                "set_dev_attr" => format!("devices/{}", args.arg()),
                "set_drv_attr" => format!("targets/{}", args.arg()),
                _ => format!("targets/{}/{}", args.opt("driver")?, args.arg()),
            };
            let attrs = args.attributes()?;
            if attrs.is_empty() {
                return Err(format!(
                    "-{} needs -attributes name=value,...",
                    args.command
                ));
            }
            for (k, v) in attrs {
                one(&fs, &format!("{dir}/{k}"), &v)?;
            }
            Ok(())
        }
        "add_target" => {
            let d = args.opt("driver")?;
            one(
                &fs,
                &format!("targets/{d}/mgmt"),
                &format!("add_target {}", args.arg()),
            )?;
            for (k, v) in args.attributes()? {
                one(&fs, &format!("targets/{d}/{}/{k}", args.arg()), &v)?;
            }
            Ok(())
        }
        "rem_target" => {
            confirm(args, "-rem_target")?;
            let d = args.opt("driver")?;
            one(
                &fs,
                &format!("targets/{d}/mgmt"),
                &format!("del_target {}", args.arg()),
            )
        }
        "enable_target" | "disable_target" => {
            let v = if args.command == "enable_target" {
                "1"
            } else {
                "0"
            };
            one(
                &fs,
                &format!("targets/{}/{}/enabled", args.opt("driver")?, args.arg()),
                v,
            )
        }
        "add_group" | "rem_group" => {
            let verb = if args.command == "add_group" {
                "create"
            } else {
                "del"
            };
            one(
                &fs,
                &format!("{}/ini_groups/mgmt", args.target_dir()?),
                &format!("{verb} {}", args.arg()),
            )
        }
        "add_init" | "rem_init" | "move_init" => {
            let dir = format!(
                "{}/ini_groups/{}/initiators/mgmt",
                args.target_dir()?,
                args.opt("group")?
            );
            let line = match args.command.as_str() {
                "add_init" => format!("add {}", args.arg()),
                "rem_init" => format!("del {}", args.arg()),
                _ => format!("move {} {}", args.arg(), args.opt("to")?),
            };
            one(&fs, &dir, &line)
        }
        "add_lun" | "rem_lun" => {
            let mut dir = args.target_dir()?;
            if let Some(g) = args.opts.get("group") {
                dir = format!("{dir}/ini_groups/{g}");
            }
            let line = if args.command == "add_lun" {
                let attrs = args.attributes()?;
                let params = mgmt_params(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                format!("add {} {}{params}", args.opt("device")?, args.arg())
            } else {
                format!("del {}", args.arg())
            };
            one(&fs, &format!("{dir}/luns/mgmt"), line.trim_end())
        }
        c => Err(format!("-{c} is not implemented")),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty()
        || argv
            .iter()
            .any(|a| matches!(a.as_str(), "-h" | "-help" | "--help"))
    {
        print!("{USAGE}");
        return if argv.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scstadmin: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scstadmin: {e}");
            ExitCode::FAILURE
        }
    }
}
