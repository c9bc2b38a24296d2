#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod api;
mod app;
mod callbacks;
pub mod config;
pub mod demo;
mod fleet;
mod hints;
mod metrics;
pub mod openapi;
mod runner;

pub use crate::app::{ServeError, Server};
pub use crate::config::{ConfigError, ServerConfig};
