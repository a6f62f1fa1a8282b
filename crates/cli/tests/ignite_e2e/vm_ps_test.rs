//! Ignite's e2e/vm_ps_test.go.
