-- The TLS certificate (DER) an agent on a host sam created serves its API with, sent at
-- registration with the bootstrap token. sam accepts that certificate and no other when
-- it connects to the host; a host without one cannot be reached.
ALTER TABLE hosts ADD COLUMN agent_certificate BYTEA;
