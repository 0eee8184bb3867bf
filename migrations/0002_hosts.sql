-- Hosts that a remote provider (Hetzner Cloud) created for workspaces. Several workspaces
-- share a host while it has room; an empty host is deleted after a grace period.
CREATE TABLE hosts (
    id                   UUID PRIMARY KEY,
    provider             TEXT NOT NULL,
    size                 TEXT NOT NULL CHECK (size IN ('small', 'medium', 'large')),
    -- How many live workspaces the host takes, fixed when it is created.
    capacity             INTEGER NOT NULL CHECK (capacity > 0),
    state                TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'deleting',
                             'deleted', 'failed')),
    server_name          TEXT NOT NULL UNIQUE,
    -- The provider's id of the server, once its API answered.
    server_id            BIGINT,
    -- The server's public address as the provider's API reported it: sam never takes an
    -- address from the agent itself.
    address              TEXT,
    agent_port           INTEGER,
    -- SHA-256 of the one-time bootstrap token; cleared when the agent redeems it.
    bootstrap_hash       BYTEA UNIQUE,
    bootstrap_expires_at TIMESTAMPTZ NOT NULL,
    error                TEXT,
    -- Since when the host has held no live workspace; NULL while it holds one.
    empty_since          TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX hosts_live ON hosts (provider, size) WHERE state IN ('creating', 'ready');

-- Servers the provider lists under sam's label that sam does not know, refreshed at each
-- sweep, for operators to look at (and delete) by hand.
CREATE TABLE unknown_servers (
    provider    TEXT NOT NULL,
    server_id   BIGINT NOT NULL,
    name        TEXT NOT NULL,
    first_seen  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, server_id)
);

-- What `/sam open --size` asked for (NULL: the provider's smallest), and where it runs.
ALTER TABLE workspaces
    ADD COLUMN size TEXT CHECK (size IN ('small', 'medium', 'large')),
    ADD COLUMN host_id UUID REFERENCES hosts (id);

CREATE INDEX workspaces_by_host ON workspaces (host_id) WHERE host_id IS NOT NULL;
