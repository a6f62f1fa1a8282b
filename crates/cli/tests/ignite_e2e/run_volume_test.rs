//! Ignite's e2e/run_volume_test.go.
