// SPDX-License-Identifier: GPL-2.0

//! scstadmin for scst-rs: SCST's configuration tool, over the same
//! `/sys/kernel/scst_tgt` interface a user has.

pub mod apply;
pub mod config;
pub mod plan;
pub mod syntax;
pub mod sysfs;
