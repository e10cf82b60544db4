//! `headroom agent`'s machinery: the incremental [`scanner`], its
//! [`cache`] of immutable figures, scanning at the lowest [`priority`], the
//! containerd [`events`] that wake it, a
//! [`runtime_log`] line whenever a runtime goes down or comes back, and the one [`shutdown`] signal that
//! stops them all. The HTTP side only ever reads the documents it publishes.

pub mod cache;
pub mod events;
pub mod priority;
pub mod runtime_log;
pub mod scanner;
pub mod shutdown;
pub mod watch;
