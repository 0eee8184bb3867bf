-- A host serves the workspaces of one installation (one GitHub account's repositories)
-- only: shells on one host share an account, so workspaces of different organisations
-- must not meet there. Hosts made before this have none and take no new workspaces.
ALTER TABLE hosts ADD COLUMN installation_id BIGINT;

DROP INDEX hosts_live;
CREATE INDEX hosts_live ON hosts (provider, size, installation_id)
    WHERE state IN ('creating', 'ready');
