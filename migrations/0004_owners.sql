-- Which sam process is working on a row, by the application_name its connections carry
-- (`sam <uuid>`, new for every process). A row whose process has no connection left in
-- pg_stat_activity was abandoned by a process that died, and another process may take it
-- over at once; a row of a process still connected is left to it. NULL: written before
-- this column existed, or by nobody in particular, and so abandoned when in transition.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE workspaces ADD COLUMN worked_by TEXT;
