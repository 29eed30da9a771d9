// SPDX-License-Identifier: GPL-2.0

//! scst-user-fileio: a disk kept in a file, served through /dev/scst_user
//! (the role of SCST's fileio_tgt).
//!
//! Usage: scst-user-fileio [-b BLOCK_SIZE] [-t THREADS] [--on-free-call]
//!        [--no-reuse] [--garbage MODE] [--hold-lba LBA]
//!        [--parse call|exception] NAME FILE
//!
//! `--garbage` makes every reply malformed, for tests of the kernel's
//! checks: `handle` (unknown cmd_h), `status` (an invalid SCSI status),
//! `length` (more data-in than the buffer), `subcode` (a wrong subcode).
//! `--hold-lba` keeps the reply to the first READ or WRITE at LBA (to its
//! PARSE with `--parse call`, else to its EXEC) until task management
//! aborts that command, for tests of TASK_MGMT_RECEIVED (repeat it to hold
//! several).
//! `--parse call|exception` asks for PARSE (every command, or the unknown
//! ones): READ and WRITE then move the blocks their CDB names even when the
//! initiator asks for more, and vendor-specific opcodes end there.

use scst_user_handlers::{scsi, Device, Handler, Opt, ReplyCmd, SUB_EXEC};
use std::fs::OpenOptions;
use std::process::exit;
use std::sync::Arc;

/// The disk, and whether to log each EXEC's buffer (with `--parse`, to
/// show what PARSE changed).
struct FileDisk(scsi::Disk, bool);

thread_local! {
    /// Whether this thread's last command was a READ (for `--garbage`).
    static LAST_WAS_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Handler for FileDisk {
    fn exec(&self, cdb: &[u8], data: &mut [u8], _direction: u8) -> scsi::Outcome {
        LAST_WAS_READ.with(|c| c.set(matches!(cdb.first(), Some(0x08 | 0x28 | 0x88 | 0xa8))));
        if self.1 {
            eprintln!(
                "exec: opcode {:#04x}, buffer {} bytes",
                cdb.first().copied().unwrap_or(0),
                data.len()
            );
        }
        self.0.exec(cdb, data)
    }

    fn parse(&self, cdb: &[u8], direction: u8, len: u32) -> Result<(u8, u32), scsi::Outcome> {
        self.0.parse(cdb, direction, len)
    }
}

fn usage() -> ! {
    eprintln!("usage: scst-user-fileio [-b BLOCK_SIZE] [-t THREADS] [--on-free-call] [--no-reuse] [--garbage handle|status|length|subcode] [--hold-lba LBA] [--parse call|exception] NAME FILE");
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut block_size, mut threads) = (512u32, 4usize);
    let mut opt = Opt {
        on_free_cmd_type: scst_user_handlers::ON_FREE_CMD_IGNORE,
        memory_reuse_type: scst_user_handlers::MEM_REUSE_ALL,
        ..Opt::default()
    };
    let mut garbage = String::new();
    let mut hold_lba = Vec::new();
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-b" => {
                block_size = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "-t" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--on-free-call" => opt.on_free_cmd_type = scst_user_handlers::ON_FREE_CMD_CALL,
            "--no-reuse" => opt.memory_reuse_type = scst_user_handlers::MEM_NO_REUSE,
            "--garbage" => garbage = args.next().unwrap_or_else(|| usage()),
            "--parse" => {
                opt.parse_type = match args.next().as_deref() {
                    Some("call") => scst_user_handlers::PARSE_CALL,
                    Some("exception") => scst_user_handlers::PARSE_EXCEPTION,
                    _ => usage(),
                }
            }
            "--hold-lba" => hold_lba.push(
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage()),
            ),
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
        .open(path)
        .unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            exit(1)
        });
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let blocks = size / u64::from(block_size);
    if blocks == 0 {
        eprintln!("{path}: smaller than one block");
        exit(1);
    }
    let disk = Arc::new(FileDisk(
        scsi::Disk {
            file,
            block_size: u64::from(block_size),
            blocks,
            serial: scsi::serial_of(name),
        },
        opt.parse_type != 0,
    ));
    let dev = Arc::new(
        Device::register(name, 0x00, block_size, opt).unwrap_or_else(|e| {
            eprintln!("register {name}: {e}");
            exit(1)
        }),
    );
    *dev.hold_lba.lock().unwrap() = hold_lba;
    eprintln!("scst-user-fileio: {name} registered: {blocks} blocks of {block_size} bytes, {threads} threads");
    let garbage = Arc::new(garbage);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (dev, disk, garbage) = (dev.clone(), disk.clone(), garbage.clone());
            std::thread::spawn(move || {
                // Only READ replies are spoiled: the LUN scan (INQUIRY,
                // READ CAPACITY) must work for the test to reach the disk.
                let mutate = |r: &mut ReplyCmd| match garbage.as_str() {
                    _ if r.subcode != SUB_EXEC || !LAST_WAS_READ.with(|c| c.get()) => {}
                    "handle" => r.cmd_h = r.cmd_h.wrapping_add(100_000),
                    "subcode" => r.subcode ^= 0x40,
                    "status" if r.subcode == SUB_EXEC => r.u.exec_reply.status = 0x77,
                    "length" if r.subcode == SUB_EXEC => r.u.exec_reply.resp_data_len = 1 << 30,
                    _ => {}
                };
                dev.serve(&*disk, &mutate)
            })
        })
        .collect();
    let mut code = 0;
    for w in workers {
        match w.join() {
            Ok(Err(e)) => {
                eprintln!("scst-user-fileio: {e}");
                code = 1;
            }
            Err(_) => code = 1,
            Ok(Ok(())) => {}
        }
    }
    exit(code)
}
