//! Ignite's e2e/registry_auth_test.go.
