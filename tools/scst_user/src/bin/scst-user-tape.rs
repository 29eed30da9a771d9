// SPDX-License-Identifier: GPL-2.0

//! scst-user-tape: a tape drive (SSC) whose cartridge is a file, served
//! through /dev/scst_user: the virtual tape library use.
//!
//! Usage: scst-user-tape [--capacity SIZE] [--early-warning SIZE] NAME FILE
//!
//! FILE is created and formatted with the capacity (default 1G) if it is
//! empty; an existing cartridge keeps the capacity it was formatted with.
//! SIZE takes a K, M or G suffix.

use scst_user_handlers::{scsi, tape::Tape, Device, Handler, Opt};
use std::fs::OpenOptions;
use std::process::exit;

struct Drive(Tape);

impl Handler for Drive {
    fn exec(&self, cdb: &[u8], data: &mut [u8], _direction: u8) -> scsi::Outcome {
        self.0.exec(cdb, data)
    }
}

fn usage() -> ! {
    eprintln!("usage: scst-user-tape [--capacity SIZE] [--early-warning SIZE] NAME FILE");
    exit(2)
}

fn size(v: Option<String>) -> u64 {
    v.as_deref()
        .and_then(scsi::parse_size)
        .unwrap_or_else(|| usage())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut capacity = 1u64 << 30;
    let mut early_warning = None;
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--capacity" => capacity = size(args.next()),
            "--early-warning" => early_warning = Some(size(args.next())),
            _ if a.starts_with('-') => usage(),
            _ => positional.push(a),
        }
    }
    let [name, path] = positional.as_slice() else {
        usage()
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            exit(1)
        });
    let serial = scsi::serial_of(name);
    let tape = Tape::open(file, capacity, early_warning, serial).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        exit(1)
    });
    let opt = Opt {
        on_free_cmd_type: scst_user_handlers::ON_FREE_CMD_IGNORE,
        memory_reuse_type: scst_user_handlers::MEM_REUSE_ALL,
        ..Opt::default()
    };
    // Type 1: sequential-access; variable block size until MODE SELECT.
    let dev = Device::register(name, 0x01, 0, opt).unwrap_or_else(|e| {
        eprintln!("register {name}: {e}");
        exit(1)
    });
    eprintln!("scst-user-tape: {name} registered, cartridge {path}");
    // One thread: a tape executes its commands in order.
    if let Err(e) = dev.serve(&Drive(tape), &|_| {}) {
        eprintln!("scst-user-tape: {e}");
        exit(1)
    }
}
