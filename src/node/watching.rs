//! The node's face of [`crate::watch`]: watch the applied log's changes from any node.

use super::Node;
use crate::watch::{WatchStream, Watcher};

impl Node {
    /// The KV service's changes to keys under `prefix` (of the default map), from version
    /// `from` (`None`: from the next change). Fed by this node's own applied log, so a
    /// follower serves it too; a start older than the retained history gets
    /// [`crate::watch::WatchError::Compacted`] as its first item.
    ///
    /// ```no_run
    /// # async fn run(node: braft::Node) {
    /// use futures::StreamExt;
    /// let mut changes = node.watch("jobs/", None);
    /// while let Some(Ok(e)) = changes.next().await {
    ///     println!("{:?} {} at version {}", e.kind, e.key, e.version);
    /// }
    /// # }
    /// ```
    pub fn watch(&self, prefix: &str, from: Option<u64>) -> WatchStream {
        self.watcher("", prefix, from).into_stream()
    }

    /// A cursor over changes in `map` under `prefix`, pulled a batch at a time.
    pub fn watcher(&self, map: &str, prefix: &str, from: Option<u64>) -> Watcher {
        self.inner
            .state
            .watch
            .watcher(map, prefix, from, self.shutdown_signal())
    }

    /// Whether another watch may open (`BRAFT_MAX_WATCHERS`); the surfaces ask before
    /// opening one, so that a flood of watchers cannot hold unbounded memory.
    pub fn watch_capacity(&self) -> Result<(), String> {
        let (open, max) = (self.inner.state.watch.watchers(), self.inner.config.max_watchers as u64);
        if open >= max {
            return Err(format!(
                "{open} watches open on this node (BRAFT_MAX_WATCHERS); retry later or elsewhere"
            ));
        }
        Ok(())
    }

    /// The last log index applied on this node.
    pub fn applied_index(&self) -> u64 {
        self.inner.state.watch.applied()
    }

    /// The oldest version a watch on this node may start from.
    pub fn watch_oldest(&self) -> u64 {
        self.inner.state.watch.oldest()
    }
}
