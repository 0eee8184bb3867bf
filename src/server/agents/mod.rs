//! What agents on remote hosts ask sam for.

pub mod register;
