//! sam: a GitHub App that opens a shell on a repository's branch from a comment.
//!
//! The control plane lives here: it takes GitHub's webhooks ([`server`]), keeps them and
//! everything else in PostgreSQL ([`database`]), acts on them ([`events`], [`commands`]),
//! talks to GitHub as an App ([`github`]), places workspaces on hosts ([`workspaces`]) and
//! serves the browser terminal ([`terminal`]).

pub mod app;
pub mod commands;
pub mod config;
pub mod database;
pub mod events;
pub mod github;
pub mod logs;
pub mod private_files;
pub mod replies;
pub mod server;
pub mod setup;
pub mod terminal;
pub mod workspaces;
