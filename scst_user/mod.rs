// SPDX-License-Identifier: GPL-2.0

//! scst_user: `/dev/scst_user`, the user-space device gateway with the ABI
//! of SCST's `scst_user.h` (zero copy, one kernel/user switch per command,
//! the kernel as master). Status: not started.
