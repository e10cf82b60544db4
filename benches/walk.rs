//! Walker benchmark (STUB).
fn main() {}
