//! Integration tests of sam, all in one binary so the crate and its dependencies link once.
//! `support` holds the harness: fixtures, a database per test, git repositories and a
//! GitHub stand-in.

mod browser;
mod checks;
mod commands;
mod crashes;
mod firstrun;
mod git_in_shells;
mod hosts;
mod lifecycle;
mod links;
mod main_path;
mod opening;
mod operating;
mod replies;
mod restart;
mod scene;
mod server;
mod stage;
mod standin_selftest;
mod startup;
mod support;
mod terminal;
mod webhooks;
