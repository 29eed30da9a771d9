// SPDX-License-Identifier: GPL-2.0

//! scst_vdisk: virtual disk device handlers.
//!
//! - `vdisk_nullio`: a size and a block size, no storage (reads return
//!   zeros, writes are dropped): the baseline for the rest of the stack.
//! - `vdisk_fileio`: a file, through the page cache (or `O_DIRECT`); reads
//!   and writes go between the file and the command's own pages.
//! - `vdisk_blockio`: a block device. READ and WRITE go to it as bios of
//!   the handler's own over the command's pages and complete from their
//!   end, so the worker is free meanwhile; the rest (and a partial last
//!   block) go through the device opened `O_DIRECT`. FUA writes carry
//!   REQ_FUA, SYNCHRONIZE CACHE flushes, UNMAP discards.

// Shared with the host test crate, where its items are public API.
#[allow(unreachable_pub)]
pub(crate) mod geometry;
mod medium;
mod sanitize;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod sbc;

use crate::kernel_ext::file::{BackingFile, BiosDone, OpenOptions};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::scst_core::{
    alua::PortView,
    cdb::{Cdb, Out},
    cmd::Deferral,
    cstring,
    device::{
        key_mark, AttrChange, Completion, CopyTargetInfo, DevHandler, ExecCmd, Executed,
        LogicalUnit, LuAttr, TaskMgmt,
    },
    mgmt::{collect_params, parse_bool, parse_ranged, parse_size, MgmtError, Params},
    sense::{self, Sense, SenseFormat},
    MgmtFailure, Scst,
};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::{
    alloc::flags::{GFP_KERNEL, GFP_NOWAIT},
    c_str,
    error::code::EAGAIN,
    fmt, new_spinlock,
    prelude::*,
    str::CString,
    sync::{Arc, SpinLock},
};
use medium::Medium;
use sanitize::{Job, Sanitizer};
use sbc::{Action, AtomicLimits, DiskInfo, ModeState, SanitizeOp};

/// Size of a nullio device when `add_device` names none: 1 TiB, large enough
/// for any benchmark, costing nothing.
const NULLIO_DEFAULT_SIZE: u64 = 1 << 40;

/// Block size of a device made without `blocksize=`.
const DEFAULT_BLOCK_SIZE: u32 = 512;

/// Which backend a vdisk device uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    File,
    Block,
}

impl Kind {
    fn handler_name(self) -> &'static str {
        match self {
            Kind::Null => "vdisk_nullio",
            Kind::File => "vdisk_fileio",
            Kind::Block => "vdisk_blockio",
        }
    }

    fn vendor(self) -> &'static [u8] {
        match self {
            Kind::Null => b"SCST_NUL",
            Kind::File => b"SCST_FIO",
            Kind::Block => b"SCST_BIO",
        }
    }
}

/// A vdisk handler of one kind.
struct VdiskHandler {
    kind: Kind,
}

const KEYS: [&str; 13] = [
    "filename",
    "size",
    "size_mb",
    "blocksize",
    "read_only",
    "nv_cache",
    "o_direct",
    "write_through",
    "rotational",
    "thin_provisioned",
    "t10_dev_id",
    "removable",
    "lb_per_pb_exp",
];

/// Physical block size reported for a file or nullio device (as SCST
/// does): a page, what the page cache reads and writes at once.
const DEFAULT_PHYSICAL_BLOCK_SIZE: u32 = 4096;

/// A range of a blockio device a command reads or writes with bios.
struct Bios {
    pos: u64,
    len: usize,
    write: bool,
    fua: bool,
    /// One `REQ_ATOMIC` bio: all of it is written or none.
    atomic: bool,
}

/// Completes a blockio command when its bios end.
struct BiosEnd {
    deferral: Option<Deferral>,
    /// The bios went with `REQ_NOWAIT`, from the submitting context.
    nowait: bool,
}

impl BiosDone for BiosEnd {
    fn bios_done(mut self: KBox<Self>, result: Result) {
        if let Some(deferral) = self.deferral.take() {
            match result {
                Err(e) if self.nowait && e == EAGAIN => deferral.would_block(),
                _ => deferral.complete(result.is_ok()),
            }
        }
    }
}

/// A vdisk logical unit.
#[pin_data]
struct Vdisk {
    kind: Kind,
    name: CString,
    filename: Option<CString>,
    /// Shared with a running sanitize operation.
    file: Option<Arc<BackingFile>>,
    block_size: u32,
    /// Capacity in bytes; changes on resize.
    size: AtomicU64,
    read_only: bool,
    nv_cache: bool,
    o_direct: bool,
    write_through: bool,
    rotational: bool,
    thin: bool,
    t10_dev_id: CString,
    usn: CString,
    naa_id: [u8; 8],
    /// `lb_per_pb_exp` (SCST's): report the backing storage's physical
    /// block size, else one logical block per physical block.
    report_physical: AtomicBool,
    /// The backing storage's physical block size.
    physical_block_size: u32,
    /// `removable`: the medium can be ejected and loaded.
    removable: bool,
    /// The block device writes atomically: WRITE ATOMIC (16) is offered.
    atomic: Option<AtomicLimits>,
    #[pin]
    medium: Medium,
    sanitizer: Sanitizer,
    #[pin]
    mode: SpinLock<ModeState>,
    /// Reads go through the page cache of a file that can be read without
    /// blocking: they are tried in the submitting context first.
    nowait_reads: bool,
    /// READ and WRITE go to a block device that takes bios without making
    /// its submitter wait: they start in the submitting context.
    nowait_bios: bool,
}

/// FNV-1a: stable identifiers derived from the device name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl DevHandler for VdiskHandler {
    fn name(&self) -> &'static str {
        self.kind.handler_name()
    }

    fn device_type(&self) -> u8 {
        0
    }

    fn mgmt_help(&self) -> &'static str {
        match self.kind {
            Kind::Null => {
                "Usage: echo \"add_device device_name [parameters]\" >mgmt\n\
                 \x20      echo \"del_device device_name\" >mgmt\n\
                 \n\
                 The following parameters available: size, size_mb, blocksize, read_only,\n\
                 rotational, thin_provisioned, t10_dev_id, removable, lb_per_pb_exp\n"
            }
            _ => {
                "Usage: echo \"add_device device_name filename=PATH [parameters]\" >mgmt\n\
                 \x20      echo \"del_device device_name\" >mgmt\n\
                 \n\
                 The following parameters available: filename, blocksize, read_only,\n\
                 nv_cache, o_direct, write_through, rotational, thin_provisioned, t10_dev_id,\n\
                 removable, lb_per_pb_exp\n"
            }
        }
    }

    fn create<'a>(
        &self,
        name: &'a str,
        params: Params<'a>,
    ) -> Result<Arc<dyn LogicalUnit>, MgmtFailure<'a>> {
        let mut v = [None; KEYS.len()];
        collect_params(params, &KEYS, &mut v)?;
        let [filename, size, size_mb, block_size, read_only, nv_cache, o_direct, write_through, rotational, thin, t10_dev_id, removable, lb_per_pb_exp] =
            v;
        let flag = |key: &'a str, v: Option<&'a str>| v.map_or(Ok(false), |v| parse_bool(key, v));
        let block_size = block_size.map_or(Ok(DEFAULT_BLOCK_SIZE), geometry::parse_block_size)?;
        let read_only = flag("read_only", read_only)?;
        let nv_cache = flag("nv_cache", nv_cache)?;
        let o_direct = flag("o_direct", o_direct)?;
        let write_through = flag("write_through", write_through)?;
        let rotational = flag("rotational", rotational)?;
        let removable = flag("removable", removable)?;
        let report_physical = lb_per_pb_exp.map_or(Ok(true), |v| parse_bool("lb_per_pb_exp", v))?;
        let (file, filename, bytes, thin) = match self.kind {
            Kind::Null => {
                if filename.is_some() {
                    return Err(MgmtError::UnknownParam("filename").into());
                }
                let (text, bytes) = match (size, size_mb) {
                    (Some(_), Some(_)) => return Err(MgmtError::Conflict("size", "size_mb").into()),
                    (Some(v), None) => (v, parse_size("size", v)?),
                    (None, Some(v)) => (v, parse_ranged("size_mb", v, 1, u64::MAX >> 20)? << 20),
                    (None, None) => ("", NULLIO_DEFAULT_SIZE),
                };
                geometry::check(text, bytes, block_size)?;
                (None, None, bytes, flag("thin_provisioned", thin)?)
            }
            Kind::File | Kind::Block => {
                if size.is_some() || size_mb.is_some() {
                    return Err(MgmtError::UnknownParam(if size.is_some() {
                        "size"
                    } else {
                        "size_mb"
                    })
                    .into());
                }
                let path = filename.ok_or(MgmtError::Missing("filename="))?;
                if !path.starts_with('/') {
                    return Err(MgmtError::BadValue {
                        key: "filename",
                        value: path,
                        expected: "an absolute path",
                    }
                    .into());
                }
                let cpath = cstring(path)?;
                let file = BackingFile::open(
                    &cpath,
                    OpenOptions {
                        read_only,
                        direct: o_direct || self.kind == Kind::Block,
                        sync: write_through,
                    },
                )
                .inspect_err(|e| pr_err!("{}: cannot open {}: {:?}\n", name, path, e))?;
                let ok_type = match self.kind {
                    Kind::Block => file.is_block_device(),
                    _ => file.is_regular() || file.is_block_device(),
                };
                if !ok_type {
                    return Err(MgmtError::BadValue {
                        key: "filename",
                        value: path,
                        expected: if self.kind == Kind::Block {
                            "a block device"
                        } else {
                            "a regular file or block device"
                        },
                    }
                    .into());
                }
                let bytes = file.size() / u64::from(block_size) * u64::from(block_size);
                if bytes == 0 {
                    return Err(MgmtError::BadValue {
                        key: "filename",
                        value: path,
                        expected: "a file of at least one block",
                    }
                    .into());
                }
                // Thin provisioning needs hole punching (files) or discard.
                let thin = flag("thin_provisioned", thin)?;
                (Some(Arc::new(file, GFP_KERNEL)?), Some(cpath), bytes, thin)
            }
        };
        let hash = fnv1a(name.as_bytes());
        let mut naa_id = hash.to_be_bytes();
        naa_id[0] = 0x30 | (naa_id[0] & 0x0f); // NAA 3: locally assigned
        let dev_name = cstring(name)?;
        let t10_dev_id = CString::try_from_fmt(fmt!("{}", t10_dev_id.unwrap_or(name)))?;
        let usn = CString::try_from_fmt(fmt!("{:08x}", hash as u32))?;
        let wce = !write_through;
        let nowait_reads =
            self.kind == Kind::File && !o_direct && file.as_ref().is_some_and(|f| f.can_nowait());
        let nowait_bios =
            self.kind == Kind::Block && file.as_ref().is_some_and(|f| f.bios_nowait());
        let atomic = file
            .as_ref()
            .filter(|_| self.kind == Kind::Block)
            .and_then(|f| f.atomic_write_unit())
            .map(|(min, max)| {
                let granularity = (min / block_size).max(1);
                AtomicLimits {
                    max_blocks: (max / block_size).min(sbc::MAX_TRANSFER_BLOCKS),
                    alignment: granularity,
                    granularity,
                }
            })
            .filter(|a| a.max_blocks >= a.granularity);
        let sanitizer = Sanitizer::new()?;
        let physical_block_size = file
            .as_ref()
            .and_then(|f| f.physical_block_size())
            .unwrap_or(DEFAULT_PHYSICAL_BLOCK_SIZE);
        let lu = Arc::pin_init(
            pin_init!(Vdisk {
                kind: self.kind,
                name: dev_name,
                filename,
                file,
                block_size,
                size: AtomicU64::new(bytes),
                read_only,
                nv_cache,
                o_direct,
                write_through,
                rotational,
                thin,
                t10_dev_id,
                usn,
                naa_id,
                report_physical: AtomicBool::new(report_physical),
                physical_block_size,
                removable,
                atomic,
                medium <- Medium::new(),
                sanitizer,
                mode <- new_spinlock!(ModeState {
                    wce,
                    d_sense: false,
                    tas: false,
                    swp: false,
                }),
                nowait_reads,
                nowait_bios,
            }),
            GFP_KERNEL,
        )?;
        Ok(lu)
    }
}

/// Largest bounce buffer for VERIFY compares and WRITE SAME patterns.
const CHUNK: usize = 64 * 1024;

impl Vdisk {
    /// Whether attribute `index` of [`VDISK_ATTRS`] is part of the
    /// configuration: what `add_device` needs to make this device again.
    /// A file's size is the file's own, so only nullio's is.
    fn is_key(&self, index: usize) -> bool {
        match index {
            0 => self.filename.is_some(),
            1 => self.kind == Kind::Null && self.size() != NULLIO_DEFAULT_SIZE,
            3 => self.block_size != DEFAULT_BLOCK_SIZE,
            4 => self.read_only,
            5 => self.nv_cache,
            6 => self.o_direct,
            7 => self.write_through,
            8 => self.rotational,
            9 => self.thin,
            10 => self.t10_dev_id.as_bytes() != self.name.as_bytes(),
            13 => self.removable,
            14 => !self.report_physical.load(Ordering::Relaxed),
            _ => false,
        }
    }

    fn blocks(&self) -> u64 {
        // Never a division by zero (the block size is checked at
        // creation), and no panic path for objtool to find.
        self.size
            .load(Ordering::Relaxed)
            .checked_div(u64::from(self.block_size))
            .unwrap_or(0)
    }

    fn info(&self, rel_tgt_id: u16, read_only: bool, alua: Option<PortView>) -> DiskInfo<'_> {
        DiskInfo {
            vendor: self.kind.vendor(),
            product: self.name.as_bytes(),
            revision: b"0100",
            t10_dev_id: self.t10_dev_id.as_bytes(),
            usn: self.usn.as_bytes(),
            naa_id: self.naa_id,
            rel_tgt_id,
            tpgs: alua.map_or(0, |a| a.tpgs()),
            target_port_group: alua.and_then(|a| a.port).map(|(group, _)| group),
            blocks: self.blocks(),
            block_size: self.block_size,
            read_only: self.read_only || read_only,
            thin: self.thin,
            rotational: self.rotational,
            lbppb_exp: self.lbppb_exp(),
            removable: self.removable,
            medium: !self.removable || self.medium.loaded(),
            atomic: self.atomic,
            sanitize: self.sanitizer.state(),
        }
    }

    /// Logical blocks per physical block, as a power of two.
    fn lbppb_exp(&self) -> u8 {
        if !self.report_physical.load(Ordering::Relaxed) {
            return 0;
        }
        let exp = self.physical_block_size.max(1).ilog2();
        exp.saturating_sub(self.block_size.max(1).ilog2()) as u8
    }

    fn pos(&self, lba: u64) -> u64 {
        lba * u64::from(self.block_size)
    }

    fn bytes(&self, blocks: u64) -> Result<usize, Sense> {
        usize::try_from(blocks * u64::from(self.block_size))
            .map_err(|_| sense::INVALID_FIELD_IN_CDB)
    }

    /// Data-out the command needs, checked against what arrived.
    fn data_out<'b>(&self, cmd: &ExecCmd<'_, 'b>, len: usize) -> Result<(), Sense> {
        if cmd.data.len() < len {
            // The initiator sent less than the CDB describes.
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        Ok(())
    }

    /// Copies the data-out parameter list into a new buffer.
    fn params(&self, cmd: &ExecCmd<'_, '_>, len: usize) -> Result<KVec<u8>, Sense> {
        let len = len.min(cmd.data.len());
        let mut buf = KVec::new();
        buf.extend_with(len, 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        cmd.data.copy_to_slice(0, &mut buf);
        Ok(buf)
    }

    /// Reads what the buffer holds of the range: a transport whose
    /// expected length is shorter than the CDB's gets that much (overflow).
    fn read(&self, cmd: &mut ExecCmd<'_, '_>, lba: u64, blocks: u32) -> Result<Executed, Sense> {
        let wanted = self.bytes(u64::from(blocks))?;
        let len = wanted.min(cmd.data.len());
        if let (Some(file), true, Kind::File) = (&self.file, cmd.nowait, self.kind) {
            // Whatever the page cache does not hold whole (or an error,
            // which the worker reports) is the worker's.
            let whole = len % self.block_size as usize == 0;
            return Ok(
                match file.read_into_nowait(cmd.data, 0, len, self.pos(lba)) {
                    Ok(n) if n == len && whole => Completion::data_in(len, wanted).into(),
                    _ => Executed::WouldBlock,
                },
            );
        }
        if let Some(file) = &self.file {
            // Whole blocks straight into the buffer (O_DIRECT needs them);
            // a partial last block through a bounce buffer.
            let bs = self.block_size as usize;
            let whole = len - len % bs;
            if whole == len {
                let done = Completion::data_in(len, wanted);
                let failed = sense::READ_ERROR.with_info(lba);
                let io = Bios {
                    pos: self.pos(lba),
                    len,
                    write: false,
                    fua: false,
                    atomic: false,
                };
                if let Some(later) = self.start_bios(cmd, file, io, done, failed) {
                    return Ok(later);
                }
            }
            if cmd.nowait {
                // What follows may block.
                return Ok(Executed::WouldBlock);
            }
            match file.read_into(cmd.data, 0, whole, self.pos(lba)) {
                Ok(n) if n == whole => {}
                _ => return Err(sense::READ_ERROR.with_info(lba)),
            }
            if whole < len {
                let mut block = KVec::new();
                block
                    .extend_with(bs, 0u8, GFP_KERNEL)
                    .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
                let at = lba + (whole / bs) as u64;
                match file.read_at(&mut block, self.pos(at)) {
                    Ok(n) if n == bs => {}
                    _ => return Err(sense::READ_ERROR.with_info(at)),
                }
                cmd.data
                    .copy_from_slice(whole, block.get(..len - whole).unwrap_or(&[]));
            }
        } else {
            // nullio has no data: zeros, never what the pages held before
            // (a transport's new pages are not cleared).
            cmd.data.zero(0, len);
        }
        Ok(Completion::data_in(len, wanted).into())
    }

    /// vdisk_blockio: `io` goes to the device as bios over the command's
    /// own pages, and the command completes (with `done`, or `failed` if a
    /// bio fails) when the last one ends; the worker goes on meanwhile.
    /// `None` leaves the command to the synchronous path (another kind of
    /// backend, an empty transfer, or a command that cannot be deferred).
    fn start_bios(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        file: &BackingFile,
        io: Bios,
        done: Completion,
        failed: Sense,
    ) -> Option<Executed> {
        if self.kind != Kind::Block || io.len == 0 {
            return None;
        }
        let nowait = cmd.nowait;
        let flags = if nowait { GFP_NOWAIT } else { GFP_KERNEL };
        let mut end = KBox::new(
            BiosEnd {
                deferral: None,
                nowait,
            },
            flags,
        )
        .ok()?;
        end.deferral = Some(cmd.defer(done, failed)?);
        // As the O_DSYNC path has it: FUA unless the cache is declared
        // non-volatile, and every write of a write-through device.
        let fua = io.write && ((io.fua && !self.nv_cache) || self.write_through);
        // Refused before anything started: `end` drops with the deferral,
        // which fails the command with `failed`.
        let _ = file.submit_bios(
            cmd.data, 0, io.len, io.pos, io.write, fua, io.atomic, nowait, end,
        );
        Some(Executed::Later)
    }

    fn write(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        fua: bool,
    ) -> Result<Executed, Sense> {
        // A transport whose expected length is shorter than the CDB's
        // (overflow) delivered less: only the whole blocks it sent are
        // written, never stale buffer contents.
        let bs = self.block_size as usize;
        let full = self.bytes(u64::from(blocks))?;
        let len = full.min(cmd.data.len() - cmd.data.len() % bs);
        if let Some(file) = &self.file {
            let done = Completion {
                transfer_len: full,
                ..Completion::NO_DATA
            };
            let io = Bios {
                pos: self.pos(lba),
                len,
                write: true,
                fua,
                atomic: false,
            };
            let failed = sense::WRITE_ERROR.with_info(lba);
            if let Some(later) = self.start_bios(cmd, file, io, done, failed) {
                return Ok(later);
            }
            if cmd.nowait {
                // What follows may block.
                return Ok(Executed::WouldBlock);
            }
            self.write_buffer(file, cmd, 0, len, lba, fua)?;
        }
        Ok(Completion::NO_DATA.into())
    }

    /// SANITIZE: starts the operation (see [`sanitize`]); without IMMED the
    /// command is deferred until it ends.
    fn sanitize(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        op: SanitizeOp,
        immed: bool,
    ) -> Result<(), Sense> {
        let job = match op {
            SanitizeOp::ExitFailureMode => return self.sanitizer.exit_failure_mode(),
            SanitizeOp::BlockErase => Job::BlockErase,
            SanitizeOp::Overwrite { param_len } => {
                let params = self.params(cmd, usize::from(param_len))?;
                if params.len() < usize::from(param_len) {
                    return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
                }
                let o = sbc::parse_overwrite(&params, self.block_size)?;
                // The pattern repeats over each logical block.
                let mut block = KVec::with_capacity(self.block_size as usize, GFP_KERNEL)
                    .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
                for &b in o.pattern.iter().cycle().take(self.block_size as usize) {
                    block
                        .push(b, GFP_KERNEL)
                        .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
                }
                Job::Overwrite {
                    block,
                    invert: o.invert,
                    passes: o.passes,
                }
            }
        };
        let waiter = if immed {
            None
        } else {
            Some(
                cmd.defer(Completion::NO_DATA, sense::SANITIZE_COMMAND_FAILED)
                    .ok_or(sense::INTERNAL_TARGET_FAILURE)?,
            )
        };
        let deferred = waiter.is_some();
        match self
            .sanitizer
            .start(job, self.file.clone(), self.size(), waiter)
        {
            // A deferred command already ended, as failed.
            Err(_) if deferred => Ok(()),
            other => other,
        }
    }

    /// WRITE ATOMIC (16): one `REQ_ATOMIC` bio, which the block device
    /// writes whole or not at all. Only a block device that writes
    /// atomically offers the command.
    fn write_atomic(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        fua: bool,
    ) -> Result<Executed, Sense> {
        let len = self.bytes(u64::from(blocks))?;
        if cmd.data.len() < len {
            // Part of an atomic write is not one.
            return Err(sense::INVALID_FIELD_IN_CDB);
        }
        let file = self.file.as_ref().ok_or(sense::INVALID_OPCODE)?;
        let done = Completion {
            transfer_len: len,
            ..Completion::NO_DATA
        };
        let io = Bios {
            pos: self.pos(lba),
            len,
            write: true,
            fua,
            atomic: true,
        };
        // Never written piecewise through the file instead: a command
        // that cannot be deferred is refused.
        self.start_bios(cmd, file, io, done, sense::WRITE_ERROR.with_info(lba))
            .ok_or(sense::INTERNAL_TARGET_FAILURE)
    }

    /// Writes `len` bytes of the command's buffer from byte `skip` to the
    /// medium at block `lba`, in this thread (`fua`: on stable storage
    /// before it returns, unless the cache is non-volatile).
    fn write_buffer(
        &self,
        file: &BackingFile,
        cmd: &ExecCmd<'_, '_>,
        skip: usize,
        len: usize,
        lba: u64,
        fua: bool,
    ) -> Result<(), Sense> {
        let dsync = fua && !self.nv_cache;
        // A short write (the filesystem filled up midway) goes on, to
        // learn why it stopped.
        let mut done = 0;
        while done < len {
            match file.write_from(
                cmd.data,
                skip + done,
                len - done,
                self.pos(lba) + done as u64,
                dsync,
            ) {
                Ok(n) if n > 0 => done += n,
                // A full filesystem holds nothing more: the initiator
                // learns that space ran out, not that the medium failed.
                Err(e) if e == ENOSPC => return Err(sense::SPACE_ALLOCATION_FAILED.with_info(lba)),
                _ => return Err(sense::WRITE_ERROR.with_info(lba)),
            }
        }
        Ok(())
    }

    fn verify(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        compare: bool,
        same: bool,
    ) -> Result<Completion, Sense> {
        let bs = self.block_size as usize;
        let total = self.bytes(u64::from(blocks))?;
        let expect_len = if compare {
            if same {
                bs
            } else {
                total
            }
        } else {
            0
        };
        self.data_out(cmd, expect_len)?;
        let Some(file) = &self.file else {
            return Ok(Completion::NO_DATA);
        };
        let mut medium = KVec::new();
        medium
            .extend_with(CHUNK.min(total.max(bs)), 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        let mut given = KVec::new();
        given
            .extend_with(medium.len(), 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        let mut done = 0usize;
        while done < total {
            let n = (total - done).min(medium.len());
            let chunk = medium.get_mut(..n).ok_or(sense::INTERNAL_TARGET_FAILURE)?;
            match file.read_at(chunk, self.pos(lba) + done as u64) {
                Ok(r) if r == n => {}
                _ => return Err(sense::READ_ERROR.with_info(lba + (done / bs) as u64)),
            }
            if compare {
                let g = given.get_mut(..n).ok_or(sense::INTERNAL_TARGET_FAILURE)?;
                if same {
                    for block in g.chunks_mut(bs) {
                        cmd.data.copy_to_slice(0, block);
                    }
                } else {
                    cmd.data.copy_to_slice(done, g);
                }
                if let Some(i) = chunk.iter().zip(g.iter()).position(|(a, b)| a != b) {
                    return Err(sense::MISCOMPARE_DURING_VERIFY.with_info((done + i) as u64));
                }
            }
            done += n;
        }
        Ok(Completion::NO_DATA)
    }

    /// Walks `total` bytes of the medium from block `lba` a chunk at a
    /// time: `each` gets the medium's bytes (zeroes without a backing
    /// file), the data-out's at the same offset, and that offset.
    fn medium_chunks(
        &self,
        cmd: &ExecCmd<'_, '_>,
        lba: u64,
        total: usize,
        mut each: impl FnMut(&mut [u8], &[u8], usize) -> Result<(), Sense>,
    ) -> Result<(), Sense> {
        let bs = self.block_size as usize;
        let chunk_len = CHUNK.min(total.max(bs));
        let mut medium = KVec::new();
        medium
            .extend_with(chunk_len, 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        let mut given = KVec::new();
        given
            .extend_with(chunk_len, 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        let mut done = 0usize;
        while done < total {
            let n = (total - done).min(chunk_len);
            let m = medium.get_mut(..n).ok_or(sense::INTERNAL_TARGET_FAILURE)?;
            if let Some(file) = &self.file {
                match file.read_at(m, self.pos(lba) + done as u64) {
                    Ok(r) if r == n => {}
                    _ => return Err(sense::READ_ERROR.with_info(lba + (done / bs) as u64)),
                }
            }
            let g = given.get_mut(..n).ok_or(sense::INTERNAL_TARGET_FAILURE)?;
            cmd.data.copy_to_slice(done, g);
            each(m, g, done)?;
            done += n;
        }
        Ok(())
    }

    /// COMPARE AND WRITE (SBC-4 5.3): the medium against the first half
    /// of the data-out, then, if equal, the second half written over it.
    /// Its atomicity is the task set's (the core runs it ORDERED, alone on
    /// the device); nullio compares against zeroes and writes nothing.
    fn compare_and_write(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        fua: bool,
    ) -> Result<Completion, Sense> {
        let half = self.bytes(u64::from(blocks))?;
        if cmd.data.len() != 2 * half {
            // The transport's expected length disagrees with the CDB's:
            // neither half can be trusted (nor a count of 256 blocks,
            // which the one-byte field cannot hold, read as zero).
            return Err(Sense::invalid_cdb_field(13, None));
        }
        if blocks == 0 {
            return Ok(Completion::NO_DATA);
        }
        self.medium_chunks(cmd, lba, half, |medium, given, done| {
            match medium.iter().zip(given).position(|(a, b)| a != b) {
                // The offset in the data-out of the first byte that differs.
                Some(i) => Err(sense::MISCOMPARE_DURING_VERIFY.with_info((done + i) as u64)),
                None => Ok(()),
            }
        })?;
        if let Some(file) = &self.file {
            self.write_buffer(file, cmd, half, half, lba, fua)?;
        }
        Ok(Completion::NO_DATA)
    }

    /// ORWRITE (SBC-4 5.12): each block becomes the medium's OR the
    /// data-out's, a chunk at a time (ORDERED, as COMPARE AND WRITE, so
    /// that nothing writes in between). nullio writes nothing.
    fn or_write(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        fua: bool,
    ) -> Result<Completion, Sense> {
        let bs = self.block_size as usize;
        let total = self.bytes(u64::from(blocks))?;
        self.data_out(cmd, total)?;
        let Some(file) = &self.file else {
            return Ok(Completion::NO_DATA);
        };
        let dsync = fua && !self.nv_cache;
        self.medium_chunks(cmd, lba, total, |medium, given, done| {
            for (m, d) in medium.iter_mut().zip(given) {
                *m |= *d;
            }
            let at = lba + (done / bs) as u64;
            match file.write_at(medium, self.pos(lba) + done as u64) {
                Ok(w) if w == medium.len() => Ok(()),
                Err(e) if e == ENOSPC => Err(sense::SPACE_ALLOCATION_FAILED.with_info(at)),
                _ => Err(sense::WRITE_ERROR.with_info(at)),
            }
        })?;
        if dsync {
            file.sync_range(self.pos(lba), self.pos(lba) + total as u64 - 1)
                .map_err(|_| sense::WRITE_ERROR.with_info(lba))?;
        }
        Ok(Completion::NO_DATA)
    }

    fn write_same(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        blocks: u32,
        unmap: bool,
        no_data: bool,
    ) -> Result<Completion, Sense> {
        let bs = self.block_size as usize;
        let mut pattern = KVec::new();
        pattern
            .extend_with(bs, 0u8, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        if !no_data {
            self.data_out(cmd, bs)?;
            if cmd.data.len() > bs {
                // The data-out is one logical block: an initiator that
                // sends more meant another command.
                return Err(sense::INVALID_FIELD_IN_CDB);
            }
            cmd.data.copy_to_slice(0, &mut pattern);
        }
        let Some(file) = &self.file else {
            return Ok(Completion::NO_DATA);
        };
        let total = self.bytes(u64::from(blocks))?;
        // UNMAP set (only a thin LUN takes it): the blocks are deallocated
        // whatever the data, and read back as zeroes (LBPRZ), as SCST and
        // LIO do; SBC-4 lets the data be written instead, but initiators
        // that set UNMAP want the space back.
        if unmap {
            file.punch_hole(self.pos(lba), total as u64)
                .map_err(|_| sense::WRITE_ERROR.with_info(lba))?;
            return Ok(Completion::NO_DATA);
        }
        let mut buf = KVec::new();
        let chunk_blocks = (CHUNK / bs).max(1);
        for _ in 0..chunk_blocks {
            buf.extend_from_slice(&pattern, GFP_KERNEL)
                .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        }
        let mut done = 0usize;
        while done < total {
            let n = (total - done).min(buf.len());
            let chunk = buf.get(..n).ok_or(sense::INTERNAL_TARGET_FAILURE)?;
            match file.write_at(chunk, self.pos(lba) + done as u64) {
                Ok(w) if w == n => {}
                _ => return Err(sense::WRITE_ERROR.with_info(lba + (done / bs) as u64)),
            }
            done += n;
        }
        Ok(Completion::NO_DATA)
    }

    fn unmap(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        param_len: u32,
        info: &DiskInfo<'_>,
    ) -> Result<Completion, Sense> {
        let params = self.params(cmd, param_len as usize)?;
        let ranges = sbc::parse_unmap(&params, info)?;
        if let Some(file) = &self.file {
            for r in ranges {
                if r.blocks == 0 {
                    continue;
                }
                file.punch_hole(self.pos(r.lba), self.pos(u64::from(r.blocks)))
                    .map_err(|_| sense::WRITE_ERROR.with_info(r.lba))?;
            }
        }
        Ok(Completion::NO_DATA)
    }

    fn lba_status(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        lba: u64,
        alloc_len: u32,
    ) -> Result<Completion, Sense> {
        let blocks_left = self.blocks() - lba;
        let bs = u64::from(self.block_size);
        let (count, deallocated) = match &self.file {
            Some(f) if self.kind == Kind::File && !f.is_block_device() => {
                let pos = self.pos(lba);
                match f.seek(pos, false) {
                    Ok(data) if data > pos => ((data - pos) / bs, true),
                    Ok(_) => {
                        let hole = f
                            .seek(pos, true)
                            .unwrap_or(self.size.load(Ordering::Relaxed));
                        ((hole - pos).div_ceil(bs), false)
                    }
                    // ENXIO: no data after pos.
                    Err(_) => (blocks_left, true),
                }
            }
            _ => (blocks_left, false),
        };
        let count = count.clamp(1, blocks_left).min(u64::from(u32::MAX)) as u32;
        let mut buf = [0u8; 24];
        let mut out = Out::new(&mut buf);
        sbc::lba_status(lba, count, deallocated, &mut out);
        let n = out.len().min(alloc_len as usize);
        let copied = cmd.data.copy_from_slice(0, buf.get(..n).unwrap_or(&[]));
        Ok(Completion::data_in(copied, n))
    }

    fn sync(&self, lba: u64, blocks: u64) -> Result<Completion, Sense> {
        if let (Some(file), false) = (&self.file, self.nv_cache) {
            let start = self.pos(lba);
            let end = if blocks == 0 {
                u64::MAX
            } else {
                self.pos(lba + blocks) - 1
            };
            file.sync_range(start, end)
                .map_err(|_| sense::WRITE_ERROR)?;
        }
        Ok(Completion::NO_DATA)
    }

    /// The commands other than READ and WRITE, which complete here.
    fn execute_other(
        &self,
        cmd: &mut ExecCmd<'_, '_>,
        action: Action,
        info: &DiskInfo<'_>,
        mode: &ModeState,
    ) -> Result<Completion, Sense> {
        match action {
            Action::Done => Ok(Completion::NO_DATA),

            Action::DataIn(alloc_len) => {
                let mut buf = KVec::new();
                buf.extend_with(4096, 0u8, GFP_KERNEL)
                    .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
                let mut out = Out::new(&mut buf);
                sbc::parse(Cdb(cmd.cdb), info, mode, &mut out)?;
                let n = out.len().min(alloc_len).min(buf.len());
                let copied = cmd.data.copy_from_slice(0, buf.get(..n).unwrap_or(&[]));
                Ok(Completion::data_in(copied, n))
            }
            // `execute`'s own.
            Action::Read { .. } | Action::Write { .. } | Action::AtomicWrite { .. } => {
                Err(sense::INTERNAL_TARGET_FAILURE)
            }
            Action::Verify {
                lba,
                blocks,
                compare,
                same,
            } => self.verify(cmd, lba, blocks, compare, same),
            Action::SyncCache { lba, blocks } => self.sync(lba, blocks),
            Action::WriteSame {
                lba,
                blocks,
                unmap,
                no_data,
            } => self.write_same(cmd, lba, blocks, unmap, no_data),
            Action::Unmap { param_len } => self.unmap(cmd, param_len, info),
            Action::ModeSelect { param_len, ten } => {
                let params = self.params(cmd, param_len as usize)?;
                if params.len() < param_len as usize {
                    return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
                }
                let new = sbc::mode_select(&params, ten, info, mode)?;
                let mut current = self.mode.lock();
                let changed = *current != new;
                *current = new;
                Ok(Completion {
                    others_ua: changed.then_some(sense::MODE_PARAMETERS_CHANGED),
                    raw: None,
                    ..Completion::NO_DATA
                })
            }
            Action::GetLbaStatus { lba, alloc_len } => self.lba_status(cmd, lba, alloc_len),
            Action::CompareAndWrite { lba, blocks, fua } => {
                self.compare_and_write(cmd, lba, blocks, fua)
            }
            Action::OrWrite { lba, blocks, fua } => self.or_write(cmd, lba, blocks, fua),
            Action::Sanitize { op, immed } => self.sanitize(cmd, op, immed).map(|()| {
                // Deferred (without IMMED): the deferral's outcome is the
                // command's.
                Completion::NO_DATA
            }),
            Action::PreventRemoval(prevent) => {
                self.medium.prevent(cmd.nexus, prevent)?;
                Ok(Completion::NO_DATA)
            }
            Action::LoadEject(load) => {
                if !load && self.medium.loaded() {
                    // What the cache holds goes to the medium before it
                    // leaves.
                    self.sync(0, 0)?;
                }
                let loaded = self.medium.load_eject(load)?;
                Ok(Completion {
                    others_ua: loaded.then_some(sense::MEDIUM_MAY_HAVE_CHANGED),
                    ..Completion::NO_DATA
                })
            }
        }
    }
}

impl LogicalUnit for Vdisk {
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Executed, Sense> {
        let mode = *self.mode.lock();
        let info = self.info(cmd.rel_tgt_id, cmd.read_only, cmd.alua);
        // First pass without a buffer: the I/O commands need none.
        let action = sbc::parse(Cdb(cmd.cdb), &info, &mode, &mut Out::new(&mut []))?;
        let data_out = action.data_out_len(self.block_size);
        let executed = match action {
            Action::Read { lba, blocks } => self.read(cmd, lba, blocks),
            Action::Write { lba, blocks, fua } => self.write(cmd, lba, blocks, fua),
            Action::AtomicWrite { lba, blocks, fua } => self.write_atomic(cmd, lba, blocks, fua),
            // Only nullio runs anything else where it may not block; a
            // sanitize starts a work, which allocates.
            Action::Sanitize { .. } if cmd.nowait => return Ok(Executed::WouldBlock),
            _ if cmd.nowait && self.kind != Kind::Null => return Ok(Executed::WouldBlock),
            other => self
                .execute_other(cmd, other, &info, &mode)
                .map(Executed::Done),
        }?;
        Ok(match executed {
            Executed::Done(mut done) => {
                if data_out > 0 {
                    done.transfer_len = data_out;
                }
                Executed::Done(done)
            }
            later => later,
        })
    }
    fn may_execute_nowait(&self, cdb: &[u8]) -> bool {
        use sbc::opcode::{
            READ_10, READ_12, READ_16, READ_6, WRITE_10, WRITE_12, WRITE_16, WRITE_6,
        };
        match self.kind {
            // Nothing of nullio waits for anything.
            Kind::Null => true,
            Kind::File => {
                self.nowait_reads
                    && matches!(cdb.first(), Some(&(READ_6 | READ_10 | READ_12 | READ_16)))
            }
            // The bios start there, and complete later.
            Kind::Block => {
                self.nowait_bios
                    && matches!(
                        cdb.first(),
                        Some(
                            &(READ_6
                                | READ_10
                                | READ_12
                                | READ_16
                                | WRITE_6
                                | WRITE_10
                                | WRITE_12
                                | WRITE_16)
                        )
                    )
            }
        }
    }

    fn task_aborted_status(&self) -> bool {
        self.mode.lock().tas
    }

    fn current_condition(&self) -> Option<Sense> {
        (self.sanitizer.state() == sbc::SanitizeState::InProgress)
            .then_some(sense::SANITIZE_IN_PROGRESS)
    }

    fn nexus_detached(&self, id: u64) {
        self.medium.nexus_detached(id);
    }

    fn task_mgmt_done(&self, tm: &TaskMgmt, _done: bool) {
        self.medium.task_mgmt_done(tm.function);
    }

    fn sense_format(&self) -> SenseFormat {
        if self.mode.lock().d_sense {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    fn copy_target(&self) -> Option<CopyTargetInfo> {
        Some(CopyTargetInfo {
            naa: self.naa_id,
            block_size: self.block_size,
            blocks: self.blocks(),
        })
    }

    fn attributes(&self) -> &'static [LuAttr] {
        &VDISK_ATTRS
    }

    fn show(&self, index: usize, out: &mut SysfsBuf) {
        let b = |v: bool| u8::from(v);
        let _ = match index {
            0 => writeln!(
                out,
                "{}",
                self.filename.as_deref().map_or(c_str!(""), |f| f)
            ),
            1 => writeln!(out, "{}", self.size()),
            2 => writeln!(out, "{}", self.size() >> 20),
            3 => writeln!(out, "{}", self.block_size),
            4 => writeln!(out, "{}", b(self.read_only)),
            5 => writeln!(out, "{}", b(self.nv_cache)),
            6 => writeln!(out, "{}", b(self.o_direct)),
            7 => writeln!(out, "{}", b(self.write_through)),
            8 => writeln!(out, "{}", b(self.rotational)),
            9 => writeln!(out, "{}", b(self.thin)),
            10 => writeln!(out, "{}", &*self.t10_dev_id),
            11 => writeln!(out, "{}", &*self.usn),
            12 => {
                let _ = write!(out, "0x");
                for byte in self.naa_id {
                    let _ = write!(out, "{byte:02x}");
                }
                writeln!(out)
            }
            13 => writeln!(out, "{}", b(self.removable)),
            14 => writeln!(out, "{}", b(self.report_physical.load(Ordering::Relaxed))),
            _ => Ok(()),
        };
        key_mark(out, self.is_key(index));
    }

    fn store<'a>(&self, index: usize, value: &'a str) -> Result<AttrChange, MgmtFailure<'a>> {
        if index == 14 {
            let v = parse_bool("lb_per_pb_exp", value)?;
            return Ok(if self.report_physical.swap(v, Ordering::Relaxed) != v {
                // READ CAPACITY (16) reports it.
                AttrChange::Attention(sense::CAPACITY_DATA_CHANGED)
            } else {
                AttrChange::Nothing
            });
        }
        let bytes = match index {
            1 => parse_size("size", value)?,
            2 => parse_ranged("size_mb", value, 1, u64::MAX >> 20)? << 20,
            _ => return Err(MgmtError::Refused("read-only attribute").into()),
        };
        geometry::check(value, bytes, self.block_size)?;
        if let Some(file) = &self.file {
            if file.is_block_device() {
                if bytes > file.size() {
                    return Err(MgmtError::BadValue {
                        key: "size",
                        value,
                        expected: "at most the block device's size",
                    }
                    .into());
                }
            } else if bytes > file.size() {
                if self.read_only {
                    return Err(MgmtError::Refused("read-only device cannot grow").into());
                }
                // Grow the (sparse) file to the new size.
                file.write_at(&[0], bytes - 1)?;
            }
        }
        self.size.store(bytes, Ordering::Relaxed);
        Ok(AttrChange::Capacity)
    }
}

static VDISK_ATTRS: [LuAttr; 15] = [
    LuAttr {
        name: c_str!("filename"),
        writable: false,
    },
    LuAttr {
        name: c_str!("size"),
        writable: true,
    },
    LuAttr {
        name: c_str!("size_mb"),
        writable: true,
    },
    LuAttr {
        name: c_str!("blocksize"),
        writable: false,
    },
    LuAttr {
        name: c_str!("read_only"),
        writable: false,
    },
    LuAttr {
        name: c_str!("nv_cache"),
        writable: false,
    },
    LuAttr {
        name: c_str!("o_direct"),
        writable: false,
    },
    LuAttr {
        name: c_str!("write_through"),
        writable: false,
    },
    LuAttr {
        name: c_str!("rotational"),
        writable: false,
    },
    LuAttr {
        name: c_str!("thin_provisioned"),
        writable: false,
    },
    LuAttr {
        name: c_str!("t10_dev_id"),
        writable: false,
    },
    LuAttr {
        name: c_str!("usn"),
        writable: false,
    },
    LuAttr {
        name: c_str!("naa_id"),
        writable: false,
    },
    LuAttr {
        name: c_str!("removable"),
        writable: false,
    },
    LuAttr {
        name: c_str!("lb_per_pb_exp"),
        writable: true,
    },
];

/// Registers the vdisk handlers with the core.
pub(crate) fn register(scst: &Arc<Scst>) -> Result {
    for kind in [Kind::Null, Kind::File, Kind::Block] {
        scst.register_handler(Arc::new(VdiskHandler { kind }, GFP_KERNEL)?)?;
    }
    Ok(())
}
