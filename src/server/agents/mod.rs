//! What workspace agents ask of sam, authenticated by the key sam shares with each agent.

pub mod credentials;
