//! What workspace agents ask of sam: a host sam created registers, and every agent asks
//! for git tokens, authenticated by the key sam shares with it.

pub mod credentials;
pub mod register;
