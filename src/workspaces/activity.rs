//! When each workspace last carried terminal traffic, for stopping the idle ones.
//!
//! Kept in memory: after a restart every workspace counts as active from the moment sam
//! started, which can only delay an idle stop, never cause one early.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

/// The last terminal traffic of each workspace that had any since sam started.
#[derive(Default)]
pub struct Activity {
    last: Mutex<HashMap<Uuid, OffsetDateTime>>,
}

impl Activity {
    /// Records traffic on a workspace's terminal now.
    pub fn touch(&self, workspace: Uuid) {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(workspace, OffsetDateTime::now_utc());
    }

    /// The last traffic recorded on a workspace's terminal.
    pub fn last(&self, workspace: Uuid) -> Option<OffsetDateTime> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&workspace)
            .copied()
    }

    /// Drops what is known of a workspace that stopped or went away.
    pub fn forget(&self, workspace: Uuid) {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&workspace);
    }
}
