// SPDX-License-Identifier: GPL-2.0

//! scst.ko: the SCST generic SCSI target subsystem, in Rust.
//!
//! One module built from one crate: the components below are its modules and
//! call each other directly. Only `kernel_ext` (the `rust/` folder, the
//! abstractions over C) may contain `unsafe` code; every other component is
//! compiled with `deny(unsafe_code)`.

// `pin_init!` recurses once per field: a device's state has more fields
// than the default limit of 128 allows.
#![recursion_limit = "256"]

use kernel::prelude::*;

#[path = "rust/mod.rs"]
mod kernel_ext;

#[deny(unsafe_code)]
#[path = "scst_core/mod.rs"]
mod scst_core;

#[deny(unsafe_code)]
#[path = "scst_vdisk/mod.rs"]
mod scst_vdisk;

#[deny(unsafe_code)]
#[path = "scst_passthrough/mod.rs"]
mod scst_passthrough;

#[deny(unsafe_code)]
#[path = "scst_local/mod.rs"]
mod scst_local;

#[deny(unsafe_code)]
#[path = "scst_iscsi/mod.rs"]
mod scst_iscsi;

#[deny(unsafe_code)]
#[path = "srpt/mod.rs"]
mod srpt;

#[deny(unsafe_code)]
#[path = "scst_user/mod.rs"]
mod scst_user;

#[deny(unsafe_code)]
#[path = "qla2x_tgt/mod.rs"]
mod qla2x_tgt;

module! {
    type: ScstModule,
    name: "scst",
    author: "scst-rs developers",
    description: "SCST generic SCSI target subsystem (Rust)",
    license: "GPL",
}

struct ScstModule {
    // Dropped first: removes /dev/scst_user (no file is open at unload).
    _user: scst_user::ScstUser,
    // Dropped first: closes every iSCSI connection while the core stands.
    _iscsi: scst_iscsi::Iscsi,
    // Nothing attached by now (scst_srpt.ko depends on scst.ko).
    _srpt: srpt::Srpt,
    // Dropped before the core: no device is removed for its SCSI device
    // once the core goes.
    _passthrough: scst_passthrough::Passthrough,
    _core: scst_core::Core,
}

impl kernel::Module for ScstModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let core = scst_core::Core::new()?;
        scst_vdisk::register(core.scst())?;
        let passthrough = scst_passthrough::register(core.scst())?;
        scst_local::register(core.scst())?;
        let iscsi = scst_iscsi::register(core.scst())?;
        let user = scst_user::register(core.scst())?;
        let srpt = srpt::register(core.scst())?;
        pr_info!("scst-rs {} loaded\n", scst_core::VERSION);
        Ok(Self {
            _user: user,
            _iscsi: iscsi,
            _srpt: srpt,
            _passthrough: passthrough,
            _core: core,
        })
    }
}

impl Drop for ScstModule {
    fn drop(&mut self) {
        pr_info!("scst-rs unloading\n");
    }
}
