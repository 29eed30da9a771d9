// SPDX-License-Identifier: GPL-2.0

//! `/dev/scst_user`'s files: REGISTER_DEVICE and the other ioctls, poll,
//! and the release that removes the device.

use super::abi::{self, DevDesc, Options, Reply};
use super::*;
use crate::kernel_ext::misc::{MiscFile, MiscOpen, PinnedUserBuf, PollQueue, POLL_ERR, POLL_IN};
use crate::scst_core::sense;
use crate::scst_core::{cstring, Scst};
use core::sync::atomic::{AtomicU32, AtomicU64};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    sync::{Arc, Mutex},
    uaccess::UserSlice,
};

pub(super) struct Opener {
    pub(super) scst: Arc<Scst>,
}

impl MiscOpen for Opener {
    fn open(&self) -> Result<Arc<dyn MiscFile>> {
        let pollq = Arc::new(PollQueue::new()?, GFP_KERNEL)?;
        let file = Arc::pin_init(
            pin_init!(UserFile {
                scst: self.scst.clone(),
                pollq,
                dev <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )?;
        Ok(file)
    }
}

/// One open file: at most one registered device.
#[pin_data]
pub(super) struct UserFile {
    pub(super) scst: Arc<Scst>,
    pub(super) pollq: Arc<PollQueue>,
    #[pin]
    pub(super) dev: Mutex<Option<Arc<UserDev>>>,
}

/// A wait interrupted after replies were applied must not restart: the
/// call would apply them again. It fails with `EINTR` instead, and the
/// process calls again without them.
pub(super) fn replied_once(e: Error, replied: bool) -> Error {
    if replied && e == ERESTARTSYS {
        EINTR
    } else {
        e
    }
}

impl UserFile {
    fn device(&self) -> Result<Arc<UserDev>> {
        self.dev.lock().clone().ok_or(ENODEV)
    }

    fn read_user<const N: usize>(addr: usize) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        UserSlice::new(addr, N).reader().read_slice(&mut b)?;
        Ok(b)
    }

    fn write_user(addr: usize, data: &[u8]) -> Result {
        UserSlice::new(addr, data.len()).writer().write_slice(data)
    }

    /// A NUL-terminated string of at most 63 characters at `addr`.
    fn read_user_str(addr: usize) -> Result<KVec<u8>> {
        let raw: [u8; 64] = Self::read_user(addr)?;
        let len = raw.iter().position(|&c| c == 0).ok_or(EINVAL)?;
        let mut v = KVec::new();
        v.extend_from_slice(&raw[..len], GFP_KERNEL)?;
        Ok(v)
    }

    fn register_device(&self, arg: usize) -> Result<i64> {
        let raw: [u8; abi::DEV_DESC_SIZE] = Self::read_user(arg)?;
        let desc = DevDesc::decode(&raw);
        let mut slot = self.dev.lock();
        if slot.is_some() {
            pr_err!("scst_user: this file already has a device\n");
            return Err(EBUSY);
        }
        let version = Self::read_user_str(desc.version_str as usize)?;
        if !version.starts_with(abi::VERSION_PREFIX) {
            pr_err!(
                "scst_user: handler interface version {:?} is not SCST 3's\n",
                core::str::from_utf8(&version).unwrap_or("<binary>")
            );
            return Err(EINVAL);
        }
        let license = Self::read_user_str(desc.license_str as usize)?;
        if !abi::LICENSES.iter().any(|l| **l == *license) {
            pr_err!("scst_user: handler license is not GPL-compatible\n");
            return Err(EPERM);
        }
        let name = desc.name().ok_or_else(|| {
            pr_err!("scst_user: invalid device name\n");
            EINVAL
        })?;
        if let Err(field) = desc.opt.validate() {
            pr_err!("scst_user: {}: invalid option {}\n", name, field);
            return Err(EINVAL);
        }
        let disk_like = matches!(desc.dev_type, 0x00 | 0x05 | 0x07 | 0x0e);
        if disk_like
            && !(desc.block_size.is_power_of_two() && (512..=1 << 20).contains(&desc.block_size))
        {
            pr_err!(
                "scst_user: {}: block size {} is not a power of two from 512\n",
                name,
                desc.block_size
            );
            return Err(EINVAL);
        }
        let mut queue = KVec::new();
        queue.reserve(256, GFP_KERNEL)?;
        let mut ucmds = KVec::new();
        ucmds.reserve(256, GFP_KERNEL)?;
        let mut cache = KVec::new();
        cache.reserve(MAX_CACHED_BUFFERS, GFP_KERNEL)?;
        let dev_name = cstring(name)?;
        let dev = Arc::pin_init(
            pin_init!(UserDev {
                name: dev_name,
                dev_type: desc.dev_type,
                block_size: desc.block_size,
                timeout_s: AtomicU32::new(DEFAULT_TIMEOUT_S),
                last_handle: AtomicU32::new(0),
                zero_copy_commands: AtomicU64::new(0),
                copied_commands: AtomicU64::new(0),
                pollq: self.pollq.clone(),
                inner <- new_spinlock!(Inner {
                    alive: true,
                    opts: desc.opt,
                    queue,
                    ucmds,
                    cache,
                }),
                replied <- new_condvar!(),
                ready <- new_condvar!(),
                watched <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        // It returns once the device is killed, below on failure or when
        // the file is released.
        let watched = dev.clone();
        self.scst.spawn(move || watched.watch())?;
        if let Err(e) = self.scst.add_handler_device(dev.clone(), dev.clone()) {
            pr_err!(
                "scst_user: cannot register device {} ({})\n",
                name,
                e.to_errno()
            );
            dev.kill();
            return Err(e);
        }
        pr_info!(
            "scst_user: device {} (type {}) registered by its handler\n",
            name,
            desc.dev_type
        );
        *slot = Some(dev);
        Ok(0)
    }

    fn unregister(&self, dev: Arc<UserDev>) {
        dev.kill();
        self.scst.remove_handler_device(dev.name_str());
        pr_info!("scst_user: device {} unregistered\n", dev.name_str());
    }

    fn reply_and_get(&self, arg: usize, nonblock: bool) -> Result<i64> {
        let dev = self.device()?;
        let head: [u8; 16] = Self::read_user(arg)?;
        let preply = abi::u64_at(&head, abi::UNION_OFFSET);
        if preply != 0 {
            let raw: [u8; abi::REPLY_CMD_SIZE] = Self::read_user(preply as usize)?;
            dev.reply(&Reply::decode(&raw))?;
        }
        let mut out = [0u8; abi::GET_CMD_SIZE];
        let h = dev
            .next(&mut out, nonblock)
            .map_err(|e| replied_once(e, preply != 0))?;
        if let Err(e) = Self::write_user(arg, &out) {
            dev.requeue(h);
            return Err(e);
        }
        Ok(0)
    }

    fn reply_and_get_multi(&self, arg: usize, nonblock: bool) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::GET_MULTI_SIZE] = Self::read_user(arg)?;
        let mut head = abi::GetMulti::decode(&raw);
        let mut outcome = Ok(0);
        head.replies_done = 0;
        for i in 0..head.replies_cnt.max(0) as usize {
            let at = head.preplies as usize + i * abi::REPLY_CMD_SIZE;
            let r = Self::read_user::<{ abi::REPLY_CMD_SIZE }>(at)
                .and_then(|raw| dev.reply(&Reply::decode(&raw)));
            if let Err(e) = r {
                outcome = Err(e);
                break;
            }
            head.replies_done += 1;
        }
        let wanted = if outcome.is_ok() {
            head.cmds_cnt.max(0) as usize
        } else {
            0
        };
        let mut got = 0usize;
        let mut out = [0u8; abi::GET_CMD_SIZE];
        while got < wanted {
            // Only the first fetch may sleep.
            let h = match dev.next(&mut out, nonblock || got > 0) {
                Ok(h) => h,
                Err(e) => {
                    if got == 0 {
                        outcome = Err(replied_once(e, head.replies_done > 0));
                    }
                    break;
                }
            };
            let at = arg + abi::GET_MULTI_SIZE + got * abi::GET_CMD_SIZE;
            if let Err(e) = Self::write_user(at, &out) {
                dev.requeue(h);
                if got == 0 {
                    outcome = Err(e);
                }
                break;
            }
            got += 1;
        }
        head.cmds_cnt = got as i16;
        let mut raw = [0u8; abi::GET_MULTI_SIZE];
        head.encode(&mut raw);
        Self::write_user(arg, &raw)?;
        outcome
    }

    fn get_extended_cdb(&self, arg: usize) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::GET_EXT_CDB_SIZE] = Self::read_user(arg)?;
        let h = abi::u32_at(&raw, 0);
        let to = abi::u64_at(&raw, 8) as usize;
        let mut tail = [0u8; MAX_CDB_LEN - abi::MAX_CDB_SIZE];
        let n = {
            let mut inner = dev.inner.lock();
            let u = inner.find(h).ok_or(EINVAL)?;
            let cdb = u.msg.cdb().ok_or(EINVAL)?;
            let rest = cdb.get(abi::MAX_CDB_SIZE..).ok_or(EINVAL)?;
            tail[..rest.len()].copy_from_slice(rest);
            rest.len()
        };
        Self::write_user(to, &tail[..n])?;
        Ok(0)
    }

    fn prealloc_buffer(&self, arg: usize) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::PREALLOC_SIZE] = Self::read_user(arg)?;
        let pbuf = abi::u64_at(&raw, 0) as usize;
        let len = abi::u32_at(&raw, 8) as usize;
        if pbuf == 0 || pbuf % PAGE_SIZE != 0 || len == 0 {
            return Err(EINVAL);
        }
        let buf = PinnedUserBuf::pin(pbuf, len)?;
        {
            let mut inner = dev.inner.lock();
            if inner.cache.len() >= MAX_CACHED_BUFFERS.min(inner.cache.capacity()) {
                drop(inner);
                drop(buf);
                return Err(EBUSY);
            }
            inner.cache.push(buf, GFP_ATOMIC)?;
        };
        let h = dev.new_handle();
        let mut out = [0u8; abi::PREALLOC_SIZE];
        out[..4].copy_from_slice(&h.to_ne_bytes());
        Self::write_user(arg, &out)?;
        Ok(0)
    }
}

impl MiscFile for UserFile {
    fn ioctl(&self, cmd: u32, arg: usize, nonblock: bool) -> Result<i64> {
        use abi::ioctl::*;
        match cmd {
            REGISTER_DEVICE => self.register_device(arg),
            UNREGISTER_DEVICE => {
                let dev = self.dev.lock().take().ok_or(ENODEV)?;
                self.unregister(dev);
                Ok(0)
            }
            SET_OPTIONS => {
                let raw: [u8; abi::OPT_SIZE] = Self::read_user(arg)?;
                let opts = Options::decode(&raw);
                let dev = self.device()?;
                opts.validate().map_err(|field| {
                    pr_err!("{}: invalid option {}\n", dev.name_str(), field);
                    EINVAL
                })?;
                dev.inner.lock().opts = opts;
                Ok(0)
            }
            GET_OPTIONS => {
                let dev = self.device()?;
                let mut raw = [0u8; abi::OPT_SIZE];
                let opts = dev.inner.lock().opts;
                opts.encode(&mut raw);
                Self::write_user(arg, &raw)?;
                Ok(0)
            }
            REPLY_AND_GET_CMD => self.reply_and_get(arg, nonblock),
            REPLY_AND_GET_MULTI => self.reply_and_get_multi(arg, nonblock),
            REPLY_CMD => {
                let dev = self.device()?;
                let raw: [u8; abi::REPLY_CMD_SIZE] = Self::read_user(arg)?;
                dev.reply(&Reply::decode(&raw))?;
                Ok(0)
            }
            FLUSH_CACHE => {
                self.device()?.flush_cache();
                Ok(0)
            }
            DEVICE_CAPACITY_CHANGED => {
                let dev = self.device()?;
                self.scst
                    .raise_device_ua(dev.name_str(), sense::CAPACITY_DATA_CHANGED);
                Ok(0)
            }
            GET_EXTENDED_CDB => self.get_extended_cdb(arg),
            PREALLOC_BUFFER => self.prealloc_buffer(arg),
            _ => Err(ENOTTY),
        }
    }

    fn poll(&self) -> (u32, Option<&PollQueue>) {
        let mask = match self.dev.lock().as_ref() {
            None => POLL_ERR,
            Some(dev) => {
                let inner = dev.inner.lock();
                if !inner.alive {
                    POLL_ERR
                } else if inner.queue.is_empty() {
                    0
                } else {
                    POLL_IN
                }
            }
        };
        (mask, Some(&*self.pollq))
    }

    fn release(&self) {
        let dev = self.dev.lock().take();
        if let Some(dev) = dev {
            self.unregister(dev);
        }
    }
}
