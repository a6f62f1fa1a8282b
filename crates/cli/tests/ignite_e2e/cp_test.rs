//! Ignite's e2e/cp_test.go.
