//! The browser terminal: signed links, sign-in with GitHub, the page, and the WebSocket
//! relay to the agent.

pub mod link;
pub mod page;
pub mod relay;
pub mod signin;
