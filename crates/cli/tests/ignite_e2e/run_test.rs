//! Ignite's e2e/run_test.go.
