//! Ignite's e2e/vm_lifecycle_test.go.
