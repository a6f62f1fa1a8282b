//! Ignite's e2e/manifest_reconciliation_test.go.
