//! turnbench: a multi-turn prefix-caching benchmark for OpenAI-compatible endpoints.
//!
//! Modules, in the order data flows: [`config`] (validated settings), [`workload`]
//! (documents and conversation plans), [`client`] (HTTP and SSE), [`metrics`]
//! (per-request records into histograms), [`verdict`], [`report`]; [`run`] drives them,
//! [`sim`] is the built-in simulator, [`cli`] the command line.

pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod report;
pub mod run;
pub mod sim;
pub mod verdict;
pub mod workload;
