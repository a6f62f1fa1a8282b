//! Ignite's own end-to-end scenarios (github.com/weaveworks/ignite, `e2e/*.go`, v0.10),
//! ported to this suite: one module per Ignite test file, with Ignite's test names, run
//! against the `ignite` and `ignited` binaries with local images (the busybox image of
//! the test harness stands in for `weaveworks/ignite-ubuntu`, Debian's cloud kernel for
//! `weaveworks/ignite-kernel`). Each scenario runs in a network namespace of its own.
//!
//! What a scenario needs from Docker or Docker Hub is replaced by a local equivalent, said
//! at the top of each module; `multinet_test.go` is not ported (it reaches into Ignite's
//! Docker sandbox container to add interfaces, which has no equivalent here).

mod util;

mod config_test;
mod cp_test;
mod gitops_test;
mod image_test;
mod manifest_reconciliation_test;
mod portmap_test;
mod registry_auth_test;
mod run_test;
mod run_volume_test;
mod vm_exec_test;
mod vm_lifecycle_test;
mod vm_ps_test;
mod zconcurrent_vm_test;
