// SPDX-License-Identifier: GPL-2.0

//! scst-user-vtl: a virtual tape library served through /dev/scst_user: a
//! media changer NAME and its drives NAME_drive0 .. NAME_driveN-1, whose
//! cartridges are tape files named by their barcodes in DIR.
//!
//! Usage: scst-user-vtl [--drives N] [--slots M] [--capacity SIZE]
//!                      [--barcodes B1,B2,...] NAME DIR
//!
//! By default 2 drives and 10 slots, the first 4 holding cartridges
//! VT0000L5 .. VT0003L5; a cartridge file is created and formatted with
//! the capacity (default 1G; SIZE takes a K, M or G suffix) when first
//! loaded, and keeps its data across runs. The slots' contents start as
//! given each run.

use scst_user_handlers::changer::{Bay, Library};
use scst_user_handlers::{scsi, Device, Handler, Opt};
use std::path::PathBuf;
use std::process::exit;
use std::sync::Arc;

struct Changer(Library);

impl Handler for Changer {
    fn exec(&self, cdb: &[u8], data: &mut [u8], _direction: u8) -> scsi::Outcome {
        self.0.exec(cdb, data)
    }
}

struct Drive(Arc<Bay>);

impl Handler for Drive {
    fn exec(&self, cdb: &[u8], data: &mut [u8], _direction: u8) -> scsi::Outcome {
        self.0.exec(cdb, data)
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: scst-user-vtl [--drives N] [--slots M] [--capacity SIZE] \
         [--barcodes B1,B2,...] NAME DIR"
    );
    exit(2)
}

fn number(v: Option<String>) -> usize {
    v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
}

fn size(v: Option<String>) -> u64 {
    v.as_deref()
        .and_then(scsi::parse_size)
        .unwrap_or_else(|| usage())
}

fn register(name: &str, dev_type: u8) -> Device {
    let opt = Opt {
        on_free_cmd_type: scst_user_handlers::ON_FREE_CMD_IGNORE,
        memory_reuse_type: scst_user_handlers::MEM_REUSE_ALL,
        ..Opt::default()
    };
    Device::register(name, dev_type, 0, opt).unwrap_or_else(|e| {
        eprintln!("register {name}: {e}");
        exit(1)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut drives, mut slots, mut capacity) = (2usize, 10usize, 1u64 << 30);
    let mut barcodes: Option<Vec<String>> = None;
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--drives" => drives = number(args.next()),
            "--slots" => slots = number(args.next()),
            "--capacity" => capacity = size(args.next()),
            "--barcodes" => {
                barcodes = Some(
                    args.next()
                        .unwrap_or_else(|| usage())
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            _ if a.starts_with('-') => usage(),
            _ => positional.push(a),
        }
    }
    let [name, dir] = positional.as_slice() else {
        usage()
    };
    if drives == 0 || slots == 0 {
        usage()
    }
    let barcodes =
        barcodes.unwrap_or_else(|| (0..slots.min(4)).map(|i| format!("VT{i:04}L5")).collect());
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        exit(1)
    }
    let names: Vec<String> = (0..drives).map(|i| format!("{name}_drive{i}")).collect();
    let bays: Vec<Arc<Bay>> = names
        .iter()
        .map(|n| Arc::new(Bay::new(scsi::serial_of(n))))
        .collect();
    let library = Library::new(
        bays.clone(),
        slots,
        &barcodes,
        dir,
        capacity,
        scsi::serial_of(name),
    )
    .unwrap_or_else(|e| {
        eprintln!("scst-user-vtl: {e}");
        exit(2)
    });
    // Type 8: medium changer; type 1: sequential access.
    let changer_dev = register(name, 0x08);
    let drive_devs: Vec<Device> = names.iter().map(|n| register(n, 0x01)).collect();
    eprintln!(
        "scst-user-vtl: {name} registered: {drives} drives, {slots} slots, {} cartridges",
        barcodes.len()
    );
    let changer = Changer(library);
    let handlers: Vec<Drive> = bays.into_iter().map(Drive).collect();
    // One thread per device: each executes its commands in order.
    let failed = std::thread::scope(|s| {
        let mut threads = vec![s.spawn(|| changer_dev.serve(&changer, &|_| {}))];
        for (dev, h) in drive_devs.iter().zip(&handlers) {
            threads.push(s.spawn(move || dev.serve(h, &|_| {})));
        }
        threads
            .into_iter()
            .filter_map(|t| t.join().ok().and_then(|r| r.err()))
            .next()
    });
    if let Some(e) = failed {
        eprintln!("scst-user-vtl: {e}");
        exit(1)
    }
}
