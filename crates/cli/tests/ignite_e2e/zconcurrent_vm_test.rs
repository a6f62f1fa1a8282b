//! Ignite's e2e/zconcurrent_vm_test.go.
