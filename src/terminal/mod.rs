//! The browser terminal: signed links, the page, and the WebSocket relay to the agent.

pub mod link;
pub mod page;
pub mod relay;
