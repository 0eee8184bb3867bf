//! What sam and `sam-agent` agree on: the binary terminal wire relayed between the
//! browser and the agent ([`frame`]), and the short-lived tokens sam presents to the
//! agent ([`token`]). Both sides depend on this crate so they cannot drift apart.

pub mod frame;
pub mod token;

pub use frame::{Frame, FrameError, MAX_MESSAGE, MAX_SESSIONS_PER_WORKSPACE};
pub use token::TokenError;
