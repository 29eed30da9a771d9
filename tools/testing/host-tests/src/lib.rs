// SPDX-License-Identifier: GPL-2.0

//! Compiles the kernel-independent modules of scst.ko for the host, so that
//! `cargo test` (and fuzzers) exercise exactly the code the module runs.
//! They are mounted at the same paths as in the kernel crate
//! (`crate::scst_core::mgmt`, ...), so their `use` lines resolve unchanged.

#[path = "../../../../scst_core/alua.rs"]
#[doc(hidden)]
pub mod core_alua;
#[path = "../../../../scst_core/cdb.rs"]
#[doc(hidden)]
pub mod core_cdb;
#[path = "../../../../scst_core/mgmt.rs"]
#[doc(hidden)]
pub mod core_mgmt;
#[path = "../../../../scst_core/pr.rs"]
#[doc(hidden)]
pub mod core_pr;
#[path = "../../../../scst_core/sense.rs"]
#[doc(hidden)]
pub mod core_sense;
#[path = "../../../../scst_core/task_set.rs"]
#[doc(hidden)]
pub mod core_task_set;
#[path = "../../../../scst_core/xcopy.rs"]
#[doc(hidden)]
pub mod core_xcopy;
#[path = "../../../../scst_iscsi/chap.rs"]
#[doc(hidden)]
pub mod iscsi_chap;
#[path = "../../../../scst_iscsi/login.rs"]
#[doc(hidden)]
pub mod iscsi_login;
#[path = "../../../../scst_iscsi/params.rs"]
#[doc(hidden)]
pub mod iscsi_params;
#[path = "../../../../scst_iscsi/pdu.rs"]
#[doc(hidden)]
pub mod iscsi_pdu;
#[path = "../../../../scst_iscsi/portal.rs"]
#[doc(hidden)]
pub mod iscsi_portal;
#[path = "../../../../scst_iscsi/text.rs"]
#[doc(hidden)]
pub mod iscsi_text;
#[path = "../../../../srpt/data.rs"]
#[doc(hidden)]
pub mod srpt_data;
#[path = "../../../../srpt/iu.rs"]
#[doc(hidden)]
pub mod srpt_iu;
#[path = "../../../../srpt/login.rs"]
#[doc(hidden)]
pub mod srpt_login;
#[path = "../../../../srpt/vectors.rs"]
#[doc(hidden)]
pub mod srpt_vectors;
#[path = "../../../../scst_user/abi.rs"]
#[doc(hidden)]
pub mod user_abi;

/// The ioctl encoding `user_abi` takes from the kernel in scst.ko: here
/// asm-generic's, which the x86 numbers of SCST's header use.
#[doc(hidden)]
pub mod ioc_encoding {
    pub const NRSHIFT: u32 = 0;
    pub const TYPESHIFT: u32 = 8;
    pub const SIZESHIFT: u32 = 16;
    pub const DIRSHIFT: u32 = 30;
    pub const WRITE: u32 = 1;
    pub const READ: u32 = 2;
}
#[path = "../../../../scst_passthrough/rules.rs"]
#[doc(hidden)]
pub mod passthrough_rules;
#[path = "../../../../scst_vdisk/geometry.rs"]
#[doc(hidden)]
pub mod vdisk_geometry;
#[path = "../../../../scst_vdisk/sbc.rs"]
#[doc(hidden)]
pub mod vdisk_sbc;

/// The modules of `scst_core/` that need no kernel.
pub mod scst_core {
    pub use super::core_alua as alua;
    pub use super::core_cdb as cdb;
    pub use super::core_mgmt as mgmt;
    pub use super::core_pr as pr;
    pub use super::core_sense as sense;
    pub use super::core_task_set as task_set;
    pub use super::core_xcopy as xcopy;
}

/// Registrations in a plain vector, as the kernel keeps them in a `KVec`.
impl core_pr::RegistrantStore for Vec<core_pr::Registrant> {
    fn all(&self) -> &[core_pr::Registrant] {
        self
    }
    fn all_mut(&mut self) -> &mut [core_pr::Registrant] {
        self
    }
    fn add(&mut self, r: core_pr::Registrant) -> Result<(), core_pr::NoRoom> {
        self.push(r);
        Ok(())
    }
    fn remove_at(&mut self, i: usize) {
        self.remove(i);
    }
}

/// The modules of `scst_vdisk/` that need no kernel.
pub mod scst_vdisk {
    pub use super::vdisk_geometry as geometry;
    pub use super::vdisk_sbc as sbc;
}

/// The modules of `scst_passthrough/` that need no kernel.
pub mod scst_passthrough {
    pub use super::passthrough_rules as rules;
}

/// The modules of `scst_iscsi/` that need no kernel.
pub mod scst_iscsi {
    pub use super::iscsi_chap as chap;
    pub use super::iscsi_login as login;
    pub use super::iscsi_params as params;
    pub use super::iscsi_pdu as pdu;
    pub use super::iscsi_portal as portal;
    pub use super::iscsi_text as text;
}

/// The modules of `srpt/` that need no kernel.
pub mod srpt {
    pub use super::srpt_data as data;
    pub use super::srpt_iu as iu;
    pub use super::srpt_login as login;
    pub use super::srpt_vectors as vectors;
}

/// The modules of `scst_user/` that need no kernel.
pub mod scst_user {
    pub use super::user_abi as abi;
}

pub use scst_core::mgmt;
