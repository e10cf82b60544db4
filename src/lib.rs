//! Headroom: attributes a Kubernetes node's disk to images, layers, containers
//! and logs, and tells on-call how far each filesystem is from DiskPressure.
//!
//! Data flows one way: the runtime readers ([`runtime`]) and the pod-log
//! reader ([`podlogs`]) say *what* exists and *where* it lives on disk; the
//! [`walk`]er measures those directories; [`inventory`] attributes the bytes
//! and builds the typed [`model`] of the node that every face reads (its
//! serde form is the status document).

pub mod agent;
pub mod audit;
pub mod client;
pub mod config;
pub mod digest;
pub mod fleet;
pub mod host;
pub mod http;
pub mod inventory;
pub mod kubelet;
pub mod layer_size;
pub mod layout;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod podlogs;
pub mod predict;
pub mod registry;
pub mod runtime;
pub mod small_file;
pub mod volumes;
pub mod walk;
pub mod what_if;
