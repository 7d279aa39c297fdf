//! Snapshots by size.
//!
//! openraft takes a snapshot (and purges the log before it) every `snapshot_logs`
//! entries. Entry counts say little about bytes: at the default of 100,000 entries, a
//! log of 1 MiB values would hold 100 GB on disk before its first snapshot. So the state
//! machine also counts the payload bytes applied since the last snapshot, and this task
//! asks for a snapshot once they reach `snapshot_log_bytes`, whichever comes first.

use std::time::Duration;

use super::Node;

pub(super) async fn snapshot_by_size(node: Node) {
    let growth = &node.inner.state.growth;
    growth.set_limit(node.inner.config.snapshot_log_bytes);
    let mut shutdown = node.shutdown_signal();
    loop {
        tokio::select! {
            _ = growth.due() => {}
            _ = shutdown.changed() => return,
        }
        // A permit can be left from before the last snapshot reset the count; and while
        // the disk is full the state machine declines scheduled snapshots anyway.
        if !growth.is_due() || node.inner.disk.full().is_some() {
            continue;
        }
        tracing::info!(
            bytes = node.inner.config.snapshot_log_bytes,
            "the log since the last snapshot reached its size limit: taking a snapshot"
        );
        if let Err(e) = node.snapshot().await {
            tracing::warn!("snapshot by size: {e}");
        }
        // The snapshot's capture resets the count; until then, do not ask again.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
