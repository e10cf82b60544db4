//! Prediction of kubelet DiskPressure: pure functions the agent calls each pass.
//!
//! A single observation (see `inventory::signals`) says whether a threshold is crossed
//! *now*. On-call wants to know before that: whether the fill rate crosses it soon
//! ([`trend`]), whether the pulls in flight will push the filesystem past it, and whether
//! the kubelet's image GC can make room first, freeing only the bytes that deleted images
//! do not share ([`gc`]). [`verdict`] combines the three into one verdict per filesystem
//! with a sentence a human reads at 4 AM. Nothing here does I/O or reads a clock: callers
//! pass the figures and the time.

pub mod gc;
pub mod history;
pub mod pull;
pub mod trend;
pub mod verdict;
