// SPDX-License-Identifier: GPL-2.0

//! srpt: the SRP target driver over RDMA (ib_srpt-compatible parameters,
//! RDMA/CM login). Status: not started.
