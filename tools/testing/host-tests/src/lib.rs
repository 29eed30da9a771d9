// SPDX-License-Identifier: GPL-2.0

//! Compiles the kernel-independent modules of scst.ko for the host, so that
//! `cargo test` (and fuzzers) exercise exactly the code the module runs.

#[path = "../../../../scst_core/mgmt.rs"]
pub mod mgmt;
