//! turnbench: a multi-turn prefix-caching benchmark for OpenAI-compatible endpoints.
//!
//! Modules, in the order data flows: [`config`] (validated settings), [`workload`]
//! (documents and conversation plans), [`client`] (HTTP and SSE, the per-request
//! measurement), [`state`] (a run's typed, mergeable state; results.json), [`verdict`]
//! (thresholds and warnings), [`report`] (text, user info, CSV, HTML); [`run`] holds
//! the phases every measuring command composes, [`merge`] joins the shards of a run,
//! [`sweep`] runs one load level after another (`sweep`, `capacity`),
//! [`scrape`] reads the server's metrics (vLLM's `/metrics`) over the measured phase,
//! [`sim`] is the built-in simulator, [`cli`] the command line.

pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod error;
pub mod merge;
pub mod report;
pub mod run;
pub mod scrape;
pub mod sim;
pub mod state;
pub mod sweep;
pub mod verdict;
pub mod workload;
