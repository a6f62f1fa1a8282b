//! Ignite's e2e/vm_exec_test.go.
