//! Integration tests against real runtimes (STUB).
fn main() {}
