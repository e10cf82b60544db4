//! `headroom agent`'s machinery: the incremental [`scanner`], its
//! [`cache`] of immutable figures, and scanning at the lowest
//! [`priority`]. The HTTP side only ever reads the documents it publishes.

pub mod cache;
pub mod events;
pub mod priority;
pub mod scanner;
pub mod watch;
