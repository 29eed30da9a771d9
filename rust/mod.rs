// SPDX-License-Identifier: GPL-2.0

//! The abstraction layer of scst.ko: the only place with `unsafe` code.
//!
//! It wraps the C interfaces that the `kernel` crate of 6.12 lacks in safe
//! types, so that the core, the backends and the target drivers are written
//! in safe Rust (they are compiled with `#![deny(unsafe_code)]`).

pub(crate) mod bindings;
pub(crate) mod crypto;
pub(crate) mod file;
pub(crate) mod kvec_ext;
pub(crate) mod misc;
pub(crate) mod net;
pub(crate) mod pages;
pub(crate) mod rdma;
pub(crate) mod rdma_channel;
pub(crate) mod scsi_host;
pub(crate) mod scsi_pt;
pub(crate) mod sg;
pub(crate) mod sysfs;
pub(crate) mod wq;
