//! Ignite's e2e/portmap_test.go.
