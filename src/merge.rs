//! `turnbench merge`: one exact report from the shards of a run (the pods of an
//! Indexed Job), read from their results.json files or their logs.

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::report::RunReport;
use crate::state::results::{Requests, Saved};

/// Read every input and merge them into one report. Inputs that are not shards of
/// one run (another seed, salt, workload or shard count, a repeated shard index) are
/// refused with the reason; missing shards make the report partial.
pub fn merge_files(paths: &[PathBuf]) -> Result<RunReport, ConfigError> {
    let mut inputs = Vec::with_capacity(paths.len());
    for path in paths {
        let saved =
            Saved::load(path).map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        inputs.push((path, saved));
    }
    // In shard order, so "first message" and the like do not depend on argument order.
    inputs.sort_by_key(|(_, s)| s.run.meta.shards.first().copied());
    let mut iter = inputs.into_iter();
    let (first_path, first) = iter
        .next()
        .ok_or_else(|| ConfigError::new("merge needs at least one results file"))?;
    let mut state = first.run;
    let mut rows = first.requests;
    for (path, saved) in iter {
        state.mergeable(&saved.run).map_err(|why| {
            ConfigError::new(format!(
                "{} cannot be merged with {}: {why}",
                path.display(),
                first_path.display()
            ))
        })?;
        state.merge(&saved.run);
        rows = match (rows, saved.requests) {
            (Some(mut a), Some(b)) => {
                let total = |r: &Requests| r.sampled_from.unwrap_or(r.rows.len());
                if a.sampled_from.is_some() || b.sampled_from.is_some() {
                    a.sampled_from = Some(total(&a) + total(&b));
                }
                a.rows.extend(b.rows);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
    let missing = state.meta.shard_count as usize
        - state.meta.shards.len().min(state.meta.shard_count as usize);
    if missing > 0 {
        tracing::warn!(
            "{missing} of {} shards are missing: the report covers only part of the plan",
            state.meta.shard_count
        );
    }
    Ok(RunReport::new(state, rows))
}
