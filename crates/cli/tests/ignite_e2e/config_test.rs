//! Ignite's e2e/config_test.go.
