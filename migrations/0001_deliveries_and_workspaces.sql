-- Webhook deliveries are stored before GitHub gets its answer, and worked from here, so
-- that a crash after the answer loses nothing and a redelivery does nothing twice.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    github_delivery TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    -- The exact bytes received: JSON with \u0000 in a string cannot be stored as jsonb.
    body            BYTEA NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'working', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    available_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until    TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    last_error      TEXT
);

CREATE INDEX deliveries_ready ON deliveries (available_at) WHERE state IN ('pending', 'working');

-- A comment is acted on once, whichever delivery carried it.
CREATE TABLE handled_comments (
    comment_id  BIGINT PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    handled_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
    id                UUID PRIMARY KEY,
    installation_id   BIGINT NOT NULL,
    repo_id           BIGINT NOT NULL,
    repo_full_name    TEXT NOT NULL,
    clone_url         TEXT NOT NULL,
    issue_number      BIGINT NOT NULL,
    is_pull_request   BOOLEAN NOT NULL,
    branch            TEXT NOT NULL,
    fetch_ref         TEXT NOT NULL,
    head_sha          TEXT NOT NULL,
    requester_id      BIGINT NOT NULL,
    requester_login   TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('requested', 'provisioning', 'ready',
                          'stopping', 'stopped', 'deleting', 'deleted', 'failed')),
    status_comment_id BIGINT,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_active_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Requests for the same repository, branch and person converge on one live workspace:
-- the database decides, so two racing deliveries cannot both create one.
CREATE UNIQUE INDEX workspaces_one_live
    ON workspaces (repo_id, fetch_ref, requester_id)
    WHERE state NOT IN ('deleted', 'failed');

CREATE INDEX workspaces_by_issue ON workspaces (repo_id, issue_number);

CREATE TABLE workspace_events (
    id           BIGSERIAL PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    state        TEXT NOT NULL,
    message      TEXT,
    at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX workspace_events_by_workspace ON workspace_events (workspace_id, at);
