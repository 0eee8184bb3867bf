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
    /// Every state, in the order of a workspace's life.
    pub const ALL: [State; 8] = [
        State::Requested,
        State::Provisioning,
        State::Ready,
        State::Stopping,
        State::Stopped,
        State::Deleting,
        State::Deleted,
        State::Failed,
    ];

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
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| format!("unknown workspace state {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_name() {
        for state in State::ALL {
            assert_eq!(State::try_from(state.as_str().to_owned()), Ok(state));
        }
        assert!(State::try_from("sleeping".to_owned()).is_err());
    }
}
