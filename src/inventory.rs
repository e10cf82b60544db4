//! Attribution (STUB).
