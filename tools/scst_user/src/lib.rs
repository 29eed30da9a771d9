// SPDX-License-Identifier: GPL-2.0

//! What every handler of `/dev/scst_user` needs: the ABI structures of
//! `scst_user/include/scst_user.h` as `repr(C)` types, the ioctls, the
//! registration, and a command loop that replies to one command and gets
//! the next in a single system call. Only the standard library is used.

pub mod changer;
pub mod scsi;
pub mod tape;

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

pub const MAX_CDB_SIZE: usize = 16;
pub const MAX_NAME: usize = 50;
pub const MAX_EXTERNAL_NAME: usize = 256;

pub const DATA_WRITE: u8 = 1;
pub const DATA_READ: u8 = 2;
pub const DATA_NONE: u8 = 4;

pub const PARSE_CALL: u8 = 1;
pub const PARSE_EXCEPTION: u8 = 2;
pub const ON_FREE_CMD_CALL: u8 = 0;
pub const ON_FREE_CMD_IGNORE: u8 = 1;
pub const MEM_NO_REUSE: u8 = 0;
pub const MEM_REUSE_ALL: u8 = 3;
pub const EXEC_REPLY_COMPLETED: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Opt {
    pub parse_type: u8,
    pub on_free_cmd_type: u8,
    pub memory_reuse_type: u8,
    pub partial_transfers_type: u8,
    pub partial_len: i32,
    pub tst: u8,
    pub tmf_only: u8,
    pub queue_alg: u8,
    pub qerr: u8,
    pub tas: u8,
    pub swp: u8,
    pub d_sense: u8,
    pub has_own_order_mgmt: u8,
    pub ext_copy_remap_supported: u8,
}

#[repr(C)]
pub struct DevDesc {
    pub version_str: u64,
    pub license_str: u64,
    pub dev_type: u8,
    pub sgv_shared: u8,
    pub sgv_disable_clustered_pool: u8,
    pub sgv_single_alloc_pages: i32,
    pub sgv_purge_interval: i32,
    pub opt: Opt,
    pub block_size: u32,
    pub enable_pr_cmds_notifications: u8,
    pub name: [u8; MAX_NAME],
    pub sgv_name: [u8; MAX_NAME],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sess {
    pub sess_h: u64,
    pub lun: u64,
    pub threads_num: u16,
    pub rd_only: u8,
    pub scsi_transport_version: u16,
    pub phys_transport_version: u16,
    pub initiator_name: [u8; MAX_EXTERNAL_NAME],
    pub target_name: [u8; MAX_EXTERNAL_NAME],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParseCmd {
    pub sess_h: u64,
    pub cdb: [u8; MAX_CDB_SIZE],
    pub cdb_len: u16,
    pub lba: i64,
    pub data_len: i64,
    pub bufflen: i32,
    pub out_bufflen: i32,
    pub timeout: i32,
    pub op_flags: u32,
    pub queue_type: u8,
    pub data_direction: u8,
    pub expected_values_set: u8,
    pub expected_data_direction: u8,
    pub expected_transfer_len: i32,
    pub expected_out_transfer_len: i32,
    pub sn: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AllocMem {
    pub sess_h: u64,
    pub cdb: [u8; MAX_CDB_SIZE],
    pub cdb_len: u16,
    pub alloc_len: i32,
    pub queue_type: u8,
    pub data_direction: u8,
    pub sn: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Exec {
    pub sess_h: u64,
    pub cdb: [u8; MAX_CDB_SIZE],
    pub cdb_len: u16,
    pub lba: i64,
    pub data_len: i64,
    pub bufflen: i32,
    pub alloc_len: i32,
    pub pbuf: u64,
    pub queue_type: u8,
    pub data_direction: u8,
    pub partial: u8,
    pub timeout: i32,
    pub p_out_buf: u64,
    pub out_bufflen: i32,
    pub sn: u32,
    pub parent_cmd_h: u32,
    pub parent_cmd_data_len: i32,
    pub partial_offset: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct OnFree {
    pub pbuf: u64,
    pub resp_data_len: i32,
    pub buffer_cached: u8,
    pub aborted: u8,
    pub status: u8,
    pub delivery_status: u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskMgmt {
    pub sess_h: u64,
    pub fn_: u32,
    pub cmd_h_to_abort: u32,
    pub cmd_sn: u32,
    pub cmd_sn_set: u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union GetCmdBody {
    pub preply: u64,
    pub sess: Sess,
    pub parse_cmd: ParseCmd,
    pub alloc_cmd: AllocMem,
    pub exec_cmd: Exec,
    pub on_free_cmd: OnFree,
    pub on_cached_mem_free_pbuf: u64,
    pub tm_cmd: TaskMgmt,
}

#[repr(C)]
pub struct GetCmd {
    pub cmd_h: u32,
    pub subcode: u32,
    pub u: GetCmdBody,
}

/// The sense member of the EXEC reply's union (8-byte aligned).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SenseRef {
    pub sense_len: u8,
    pub psense_buffer: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ReplyExec {
    pub resp_data_len: i32,
    pub pbuf: u64,
    pub reply_type: u8,
    pub status: u8,
    pub sense: SenseRef,
}

/// The PARSE reply's members when `status` is 0 (the C union after
/// `status` is 8-byte aligned).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ReplyParse {
    pub status: u8,
    pub values: ParseValues,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ParseValues {
    pub queue_type: u8,
    pub data_direction: u8,
    pub cdb_len: u16,
    pub lba: i64,
    pub data_len: i64,
    pub bufflen: i32,
    pub op_flags: u32,
    pub out_bufflen: i32,
}

/// The PARSE reply's members when `status` is not 0.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ReplyParseStatus {
    pub status: u8,
    pub sense: SenseRef,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union ReplyBody {
    pub result: i32,
    pub parse_reply: ReplyParse,
    pub parse_status: ReplyParseStatus,
    pub alloc_pbuf: u64,
    pub exec_reply: ReplyExec,
    // The largest member (the parse reply) sets the size.
    pub raw: [u64; 6],
}

#[repr(C)]
pub struct ReplyCmd {
    pub cmd_h: u32,
    pub subcode: u32,
    pub u: ReplyBody,
}

// The layouts of scst_user.h on 64-bit Linux.
const _: () = assert!(std::mem::size_of::<GetCmd>() == 544);
const _: () = assert!(std::mem::size_of::<ReplyCmd>() == 56);
const _: () = assert!(std::mem::size_of::<DevDesc>() == 160);
const _: () = assert!(std::mem::size_of::<Exec>() == 104);
const _: () = assert!(std::mem::offset_of!(ReplyExec, sense) == 24);
const _: () = assert!(std::mem::size_of::<ParseCmd>() == 80);
const _: () = assert!(std::mem::offset_of!(ParseCmd, expected_transfer_len) == 68);
const _: () = assert!(std::mem::offset_of!(ReplyParse, values) == 8);
const _: () = assert!(std::mem::offset_of!(ParseValues, lba) == 8);
const _: () = assert!(std::mem::offset_of!(ParseValues, out_bufflen) == 32);
const _: () = assert!(std::mem::offset_of!(ReplyParseStatus, sense) == 8);

const fn ioc(dir: u64, ty: u8, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr
}
const W: u64 = 1;
const R: u64 = 2;

pub const REGISTER_DEVICE: u64 = ioc(W, b'u', 1, std::mem::size_of::<DevDesc>());
pub const UNREGISTER_DEVICE: u64 = ioc(0, b'u', 2, 0);
pub const SET_OPTIONS: u64 = ioc(W, b'u', 3, std::mem::size_of::<Opt>());
pub const GET_OPTIONS: u64 = ioc(R, b'u', 4, std::mem::size_of::<Opt>());
pub const REPLY_AND_GET_CMD: u64 = ioc(R | W, b'u', 5, std::mem::size_of::<GetCmd>());
pub const REPLY_CMD: u64 = ioc(W, b'u', 6, std::mem::size_of::<ReplyCmd>());
pub const FLUSH_CACHE: u64 = ioc(0, b'u', 7, 0);
pub const DEVICE_CAPACITY_CHANGED: u64 = ioc(0, b'u', 8, 0);

pub const SUB_ATTACH_SESS: u32 = ioc(R, b's', 0x20, std::mem::size_of::<Sess>()) as u32;
pub const SUB_DETACH_SESS: u32 = ioc(R, b's', 0x21, std::mem::size_of::<Sess>()) as u32;
pub const SUB_PARSE: u32 = ioc(R | W, b's', 1, std::mem::size_of::<ParseCmd>()) as u32;
pub const SUB_ALLOC_MEM: u32 = ioc(R | W, b's', 2, std::mem::size_of::<AllocMem>()) as u32;
pub const SUB_EXEC: u32 = ioc(R | W, b's', 3, std::mem::size_of::<Exec>()) as u32;
pub const SUB_ON_FREE_CMD: u32 = ioc(R, b's', 4, std::mem::size_of::<OnFree>()) as u32;
pub const SUB_ON_CACHED_MEM_FREE: u32 = ioc(R, b's', 5, 8) as u32;
pub const SUB_TASK_MGMT_RECEIVED: u32 = ioc(R | W, b's', 8, std::mem::size_of::<TaskMgmt>()) as u32;
pub const SUB_TASK_MGMT_DONE: u32 = ioc(R | W, b's', 9, std::mem::size_of::<TaskMgmt>()) as u32;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

/// One ioctl on `file`; errno as an `io::Error`.
///
/// # Safety
///
/// `arg` must be what `request` expects.
pub unsafe fn do_ioctl<T>(file: &File, request: u64, arg: *mut T) -> io::Result<()> {
    // SAFETY: the caller passes the argument the request expects.
    let r = unsafe { ioctl(file.as_raw_fd(), request, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The page-aligned buffers handed to the kernel, by address.
#[derive(Default)]
pub struct Buffers {
    live: Mutex<HashMap<u64, usize>>,
}

impl Buffers {
    /// A zeroed, page-aligned buffer of `len` bytes; its address.
    pub fn alloc(&self, len: usize) -> u64 {
        let Ok(layout) = Layout::from_size_align(len.max(1), 4096) else {
            return 0;
        };
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) } as u64;
        if p != 0 {
            self.live.lock().unwrap().insert(p, len.max(1));
        }
        p
    }

    /// Frees a buffer from [`Self::alloc`] (unknown addresses are ignored).
    pub fn free(&self, p: u64) {
        if let Some(len) = self.live.lock().unwrap().remove(&p) {
            // SAFETY: allocated by `alloc` with this layout, freed once.
            unsafe { dealloc(p as *mut u8, Layout::from_size_align(len, 4096).unwrap()) };
        }
    }

    /// The buffer at `p` as a slice of `len` bytes, if it holds them.
    ///
    /// # Safety
    ///
    /// No other reference to the buffer may be live (each command owns its
    /// buffer while it executes).
    pub unsafe fn slice<'a>(&self, p: u64, len: usize) -> Option<&'a mut [u8]> {
        let have = *self.live.lock().unwrap().get(&p)?;
        if len > have {
            return None;
        }
        // SAFETY: a live allocation of at least `len` bytes, exclusively ours.
        Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
    }
}

/// A registered device.
pub struct Device {
    pub file: File,
    pub buffers: Buffers,
    /// For tests: the first READ or WRITE at each of these LBAs gets no
    /// reply (to its PARSE, when the device parses, else to its EXEC)
    /// until a TASK_MGMT_RECEIVED names it.
    pub hold_lba: Mutex<Vec<i64>>,
    /// The replies so held, by command handle, with their sense.
    held: Mutex<Vec<(ReplyCmd, Box<[u8; 252]>)>>,
}

/// What a handler does with each command.
pub trait Handler: Sync {
    /// Executes a command: `data` is the buffer (data-out in, data-in out).
    /// Returns the status, the bytes of data-in and the sense.
    fn exec(&self, cdb: &[u8], data: &mut [u8], direction: u8) -> scsi::Outcome;

    /// PARSE: the data direction and buffer length the command has (the
    /// initiator's are `direction` and `len`), or how it ends. By default
    /// the initiator's.
    fn parse(&self, _cdb: &[u8], direction: u8, len: u32) -> Result<(u8, u32), scsi::Outcome> {
        Ok((direction, len))
    }
}

/// `SCST_INFO_VALID` of `op_flags`: a PARSE reply must set it.
pub const INFO_VALID: u32 = 0x20;

impl Device {
    /// Opens `/dev/scst_user` and registers a device.
    pub fn register(name: &str, dev_type: u8, block_size: u32, opt: Opt) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/scst_user")?;
        let version = CString::new("3.11.0-pre scst-rs").unwrap();
        let license = CString::new("GPL").unwrap();
        let mut desc = DevDesc {
            version_str: version.as_ptr() as u64,
            license_str: license.as_ptr() as u64,
            dev_type,
            sgv_shared: 0,
            sgv_disable_clustered_pool: 0,
            sgv_single_alloc_pages: 0,
            sgv_purge_interval: 0,
            opt,
            block_size,
            enable_pr_cmds_notifications: 0,
            name: [0; MAX_NAME],
            sgv_name: [0; MAX_NAME],
        };
        let n = name.len().min(MAX_NAME - 1);
        desc.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: REGISTER_DEVICE takes a dev_desc; the strings outlive it.
        unsafe { do_ioctl(&file, REGISTER_DEVICE, &mut desc)? };
        Ok(Self {
            file,
            buffers: Buffers::default(),
            hold_lba: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
    }

    /// Whether the first message for a command at `lba` is to be held
    /// (see [`Self::hold_lba`]); the LBA is held once.
    fn take_hold(&self, lba: i64) -> bool {
        let mut h = self.hold_lba.lock().unwrap();
        match h.iter().position(|&l| l == lba) {
            Some(i) => {
                h.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Keeps `reply` (and the sense it points to) until task management
    /// names its command.
    fn hold(&self, reply: &ReplyCmd, sense: Box<[u8; 252]>) {
        let copy = ReplyCmd {
            cmd_h: reply.cmd_h,
            subcode: reply.subcode,
            u: reply.u,
        };
        self.held.lock().unwrap().push((copy, sense));
    }

    /// Serves commands until the device goes away (or an error).
    pub fn serve(&self, handler: &dyn Handler, mutate: &dyn Fn(&mut ReplyCmd)) -> io::Result<()> {
        let mut reply = ReplyCmd {
            cmd_h: 0,
            subcode: 0,
            u: ReplyBody { raw: [0; 6] },
        };
        let mut have_reply = false;
        let mut sense = [0u8; 252];
        loop {
            let mut get = GetCmd {
                cmd_h: 0,
                subcode: 0,
                u: GetCmdBody {
                    preply: if have_reply {
                        &mut reply as *mut ReplyCmd as u64
                    } else {
                        0
                    },
                },
            };
            if have_reply {
                mutate(&mut reply);
            }
            // SAFETY: REPLY_AND_GET_CMD takes a get_cmd whose preply points
            // to a reply_cmd (or is 0).
            match unsafe { do_ioctl(&self.file, REPLY_AND_GET_CMD, &mut get) } {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(EINTR) => {
                    have_reply = false;
                    continue;
                }
                Err(e) if matches!(e.raw_os_error(), Some(EINVAL | ESRCH)) => {
                    // The kernel refused the reply (and failed its command):
                    // go on with the next one.
                    eprintln!("reply to command {} refused: {e}", reply.cmd_h);
                    have_reply = false;
                    continue;
                }
                Err(e) => return Err(e),
            }
            have_reply = true;
            reply.cmd_h = get.cmd_h;
            reply.subcode = get.subcode;
            reply.u = ReplyBody { raw: [0; 6] };
            match get.subcode {
                SUB_PARSE => {
                    // SAFETY: the subcode says which member is valid.
                    let p = unsafe { get.u.parse_cmd };
                    let len = (p.cdb_len as usize).min(MAX_CDB_SIZE);
                    let wanted = p.expected_transfer_len.max(0) as u32;
                    let answer = handler.parse(&p.cdb[..len], p.expected_data_direction, wanted);
                    match &answer {
                        Ok((direction, bufflen)) => {
                            eprintln!(
                                "parse: opcode {:#04x}, initiator {wanted} bytes, handler {bufflen} ({direction})",
                                p.cdb[0]
                            );
                            reply.u.parse_reply = ReplyParse {
                                status: 0,
                                values: ParseValues {
                                    queue_type: p.queue_type,
                                    data_direction: *direction,
                                    cdb_len: p.cdb_len,
                                    lba: p.lba,
                                    data_len: i64::from(*bufflen),
                                    bufflen: *bufflen as i32,
                                    op_flags: INFO_VALID,
                                    out_bufflen: 0,
                                },
                            }
                        }
                        Err(out) => {
                            eprintln!(
                                "parse: opcode {:#04x} ends with status {:#04x}",
                                p.cdb[0], out.status
                            );
                            let n = out.sense.len().min(sense.len());
                            sense[..n].copy_from_slice(&out.sense[..n]);
                            reply.u.parse_status = ReplyParseStatus {
                                status: out.status,
                                sense: SenseRef {
                                    sense_len: n as u8,
                                    psense_buffer: sense.as_ptr() as u64,
                                },
                            };
                        }
                    }
                    if wanted > 0 && self.take_hold(p.lba) {
                        // The PARSE reply waits: its sense, if any, is
                        // copied where the held reply keeps it.
                        eprintln!("holding command {} at PARSE (LBA {})", get.cmd_h, p.lba);
                        let mut held_sense = Box::new(sense);
                        if answer.is_err() {
                            // A failed PARSE's reply is a parse_status.
                            reply.u.parse_status.sense.psense_buffer =
                                held_sense.as_mut_ptr() as u64;
                        }
                        self.hold(&reply, held_sense);
                        have_reply = false;
                    }
                }
                SUB_ALLOC_MEM => {
                    // SAFETY: the subcode says which member is valid.
                    let a = unsafe { get.u.alloc_cmd };
                    reply.u.alloc_pbuf = self.buffers.alloc(a.alloc_len.max(0) as usize);
                }
                SUB_EXEC => {
                    // SAFETY: as above.
                    let e = unsafe { get.u.exec_cmd };
                    let len = (e.cdb_len as usize).min(MAX_CDB_SIZE);
                    let mut empty = [0u8; 0];
                    let data = if e.pbuf != 0 {
                        // SAFETY: the kernel hands each buffer to one
                        // command at a time.
                        unsafe { self.buffers.slice(e.pbuf, e.bufflen.max(0) as usize) }
                    } else {
                        None
                    };
                    let data = data.unwrap_or(&mut empty);
                    let out = handler.exec(&e.cdb[..len], data, e.data_direction);
                    let hold = e.bufflen > 0 && self.take_hold(e.lba);
                    let mut held_sense = Box::new([0u8; 252]);
                    let keep: &mut [u8; 252] = if hold { &mut held_sense } else { &mut sense };
                    let sense_len = out.sense.len().min(keep.len());
                    keep[..sense_len].copy_from_slice(&out.sense[..sense_len]);
                    reply.u.exec_reply = ReplyExec {
                        resp_data_len: out.data_in as i32,
                        pbuf: 0,
                        reply_type: EXEC_REPLY_COMPLETED,
                        status: out.status,
                        sense: SenseRef {
                            sense_len: sense_len as u8,
                            psense_buffer: keep.as_ptr() as u64,
                        },
                    };
                    if hold {
                        eprintln!("holding command {} (LBA {})", get.cmd_h, e.lba);
                        self.hold(&reply, held_sense);
                        have_reply = false;
                    }
                }
                SUB_TASK_MGMT_RECEIVED | SUB_TASK_MGMT_DONE => {
                    // SAFETY: as above.
                    let tm = unsafe { get.u.tm_cmd };
                    let done = get.subcode == SUB_TASK_MGMT_DONE;
                    eprintln!(
                        "task management {}: fn {} session {:#x} command {}",
                        if done { "done" } else { "received" },
                        tm.fn_,
                        tm.sess_h,
                        tm.cmd_h_to_abort
                    );
                    let released = {
                        let mut held = self.held.lock().unwrap();
                        let i = held.iter().position(|(r, _)| r.cmd_h == tm.cmd_h_to_abort);
                        i.map(|i| held.swap_remove(i))
                    };
                    if let (Some((mut r, _sense)), false) = (released, done) {
                        // The held command ends now, as the abort asks.
                        // SAFETY: REPLY_CMD takes a reply_cmd; its sense
                        // buffer (`_sense`) lives until the call returns.
                        match unsafe { do_ioctl(&self.file, REPLY_CMD, &mut r) } {
                            Ok(()) => eprintln!("replied to held command {}", r.cmd_h),
                            Err(e) => eprintln!("reply to held command {}: {e}", r.cmd_h),
                        }
                    }
                    reply.u.result = 0;
                }
                SUB_ATTACH_SESS => {
                    // SAFETY: as above.
                    let sess = unsafe { get.u.sess };
                    eprintln!(
                        "session attached: {:#x} LUN {} threads_num {}",
                        sess.sess_h, sess.lun, sess.threads_num
                    );
                    reply.u.result = 0;
                }
                SUB_ON_FREE_CMD => {
                    // SAFETY: as above.
                    let f = unsafe { get.u.on_free_cmd };
                    if f.buffer_cached == 0 {
                        self.buffers.free(f.pbuf);
                    }
                }
                SUB_ON_CACHED_MEM_FREE => {
                    // SAFETY: as above.
                    self.buffers.free(unsafe { get.u.on_cached_mem_free_pbuf });
                }
                _ => reply.u.result = 0,
            }
        }
    }
}

const EINTR: i32 = 4;
const ESRCH: i32 = 3;
const EINVAL: i32 = 22;
