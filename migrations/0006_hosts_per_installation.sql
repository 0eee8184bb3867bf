-- A host serves the workspaces of one installation (one GitHub account's repositories)
-- only, so that the workspaces of different organisations never share a machine. Hosts
-- made before this have none and take no new workspaces.
ALTER TABLE hosts ADD COLUMN installation_id BIGINT;

DROP INDEX hosts_live;
CREATE INDEX hosts_live ON hosts (provider, size, installation_id)
    WHERE state IN ('creating', 'ready');
