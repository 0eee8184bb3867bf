//! The states a workspace moves through.

use std::fmt;

/// A workspace's place in its life; every change is stored with a timestamped event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Requested,
    Provisioning,
    Ready,
    Stopping,
    Stopped,
    Deleting,
    Deleted,
    Failed,
}

impl State {
    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Provisioning => "provisioning",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Deleting => "deleting",
            State::Deleted => "deleted",
            State::Failed => "failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for State {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Ok(match value.as_str() {
            "requested" => State::Requested,
            "provisioning" => State::Provisioning,
            "ready" => State::Ready,
            "stopping" => State::Stopping,
            "stopped" => State::Stopped,
            "deleting" => State::Deleting,
            "deleted" => State::Deleted,
            "failed" => State::Failed,
            other => return Err(format!("unknown workspace state {other:?}")),
        })
    }
}
