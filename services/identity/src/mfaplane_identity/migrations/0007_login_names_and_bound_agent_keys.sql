-- A user's login name on protected systems (the Unix login an SSH agent reports): unique among the
-- users not deleted, case and all, as Unix compares them. A deleted user's name is free again.
ALTER TABLE credentials ADD COLUMN login_name text;
CREATE UNIQUE INDEX credentials_login_name ON credentials (login_name) WHERE login_name IS NOT NULL AND NOT deleted;

-- The one system a system agent's key decides for. Agent keys made before this have none, and the
-- decision endpoint refuses them: each host gets a key of its own, so one stolen host's key speaks
-- for that host alone.
ALTER TABLE api_keys ADD COLUMN system_id uuid;
