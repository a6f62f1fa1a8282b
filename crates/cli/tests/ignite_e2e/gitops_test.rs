//! Ignite's e2e/gitops_test.go.
