//! Ignite's e2e/image_test.go.
