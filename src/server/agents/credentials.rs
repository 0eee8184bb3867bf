//! `POST /api/agents/workspaces/{id}/git-credentials`: a fresh repository token for git in
//! a workspace's shells, asked for by the agent that holds the workspace.
//!
//! The agent proves itself with a token signed with the key sam shares with it, meant for
//! sam (not for the agent) and naming the workspace; sam checks it with the key of the
//! agent that holds that workspace. A token is given only while the workspace is live,
//! for its repository alone, with `contents: write` when the checked-out branch is the
//! repository's own and `contents: read` when it came from a fork: code from a fork must
//! not be able to write to the repository it asks to be merged into. Nor does a token give
//! more than the person the workspace is for may do now: losing write access to the
//! repository takes pushing away, losing all access takes the tokens away.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{bearer, no_store, refuse};
use crate::database::workspaces::WorkspaceModel;
use crate::github::Permission;
use crate::github::tokens::Access;
use crate::server::AppState;
use crate::workspaces::State as WorkspaceState;

/// Hands the agent a token for the workspace's repository, or says why not.
pub async fn issue(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(bearer) = bearer(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return refuse(StatusCode::NOT_FOUND, "no such workspace");
    };
    let agent = match app.workspaces.provider().agent_for(id).await {
        Ok(agent) => agent,
        Err(error) => {
            tracing::warn!(workspace = %id, error = format!("{error:#}"), "no agent to check a credential request against");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the workspace's agent is not running",
            );
        }
    };
    if let Err(error) = agent.verify_agent_token(bearer, id) {
        tracing::info!(workspace = %id, %error, "refused an agent's credential request");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the agent token is not valid for this workspace",
        );
    }
    let workspace = match app.workspaces.get(id).await {
        Ok(Some(workspace)) => workspace,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such workspace"),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "reading a workspace for its credentials"
            );
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            );
        }
    };
    if !is_live(workspace.state) {
        tracing::info!(workspace = %id, state = %workspace.state, "refused credentials of a workspace that is not live");
        return refuse(
            StatusCode::GONE,
            &format!("the workspace is {}", workspace.state),
        );
    }

    // The person may have lost access since the workspace was opened for them: git in it
    // gets no more than they have now.
    let permission = match app
        .github
        .repo(workspace.installation_id as u64, &workspace.repo_full_name)
    {
        Ok(repo) => repo.permission(&workspace.requester_login).await,
        Err(error) => Err(error),
    };
    let access = match permission {
        Ok(permission) if permission.may_open_workspaces() => access_of(&workspace),
        Ok(Permission::Read | Permission::Triage) => Access::Read,
        Ok(_) => {
            tracing::info!(workspace = %id, login = %workspace.requester_login, "refused credentials to a person without access to the repository");
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "{} no longer has access to {}",
                    workspace.requester_login, workspace.repo_full_name
                ),
            );
        }
        Err(error) => {
            tracing::warn!(workspace = %id, error = format!("{error:#}"), "cannot check the person's access for git credentials");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "GitHub did not say whether the person still has access",
            );
        }
    };
    let issued = app
        .github
        .repository_token(
            workspace.installation_id as u64,
            workspace.repo_id as u64,
            access,
        )
        .await;
    let token = match issued {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(workspace = %id, error = format!("{error:#}"), "GitHub did not issue a repository token");
            return refuse(StatusCode::BAD_GATEWAY, "GitHub did not issue a token");
        }
    };
    tracing::info!(workspace = %id, repo = %workspace.repo_full_name, access = access.as_str(), "issued git credentials");
    let expires_in = (token.expires_at - OffsetDateTime::now_utc())
        .try_into()
        .unwrap_or(Duration::ZERO);
    let mut response = Json(json!({
        "token": token.token.expose_secret(),
        "expires_in_secs": expires_in.as_secs(),
        "access": access.as_str(),
    }))
    .into_response();
    no_store(&mut response);
    response
}

/// A workspace still being prepared or kept stopped may be used again; one that failed or
/// was (or is being) deleted has no checkout to push from.
fn is_live(state: WorkspaceState) -> bool {
    !matches!(
        state,
        WorkspaceState::Deleting | WorkspaceState::Deleted | WorkspaceState::Failed
    )
}

/// Write access only for a branch of the repository itself: a pull request from a fork
/// is fetched through `refs/pull/<n>/head`, and its code gets read access alone.
fn access_of(workspace: &WorkspaceModel) -> Access {
    if workspace.fetch_ref.starts_with("refs/heads/") {
        Access::Write
    } else {
        Access::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_workspaces_get_credentials() {
        for state in [
            WorkspaceState::Requested,
            WorkspaceState::Provisioning,
            WorkspaceState::Ready,
            WorkspaceState::Stopping,
            WorkspaceState::Stopped,
        ] {
            assert!(is_live(state), "{state}");
        }
        for state in [
            WorkspaceState::Deleting,
            WorkspaceState::Deleted,
            WorkspaceState::Failed,
        ] {
            assert!(!is_live(state), "{state}");
        }
    }
}
