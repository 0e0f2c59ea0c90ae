-- One PostgreSQL role per service, each owning its own schema and nothing else: a service's stolen
-- credential cannot read or write another service's tables (its outbox, its event store).
--
-- Runs once, as a superuser, in the database `mfaplane`:
--   - docker-compose.yml mounts it into the postgres image's /docker-entrypoint-initdb.d, which runs it
--     when the data volume is new (after `docker compose down -v`; an older volume keeps its roles);
--   - the dev cluster's PostgreSQL (overlays/dev): psql -v ON_ERROR_STOP=1 -d mfaplane -f roles-dev.sql
--
-- DEV ONLY: the passwords are throw-away values, the same as in the DATABASE_URLs of docker-compose.yml
-- and overlays/dev (tests/test_deploy.py checks that they match). Production roles are made the same
-- way with passwords from the secret manager (docs/operations.md, "What a cluster needs").

-- Nobody connects unless granted below (the superuser always can).
REVOKE ALL ON DATABASE mfaplane FROM PUBLIC;

-- The gateway's user search uses pg_trgm (migration 0005_principal_search.sql), which it finds here.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

-- Each role: may log in, connect, and create schemas (`migrate` runs CREATE SCHEMA IF NOT EXISTS, which
-- PostgreSQL checks against the database's CREATE privilege even when the schema exists); owns its
-- schema; no other privilege, no membership in another role, not a superuser.
CREATE ROLE mfaplane_identity LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'dev-only-identity-db-password';
GRANT CONNECT, CREATE ON DATABASE mfaplane TO mfaplane_identity;
CREATE SCHEMA identity AUTHORIZATION mfaplane_identity;
REVOKE ALL ON SCHEMA identity FROM PUBLIC;

CREATE ROLE mfaplane_mfa LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'dev-only-mfa-db-password';
GRANT CONNECT, CREATE ON DATABASE mfaplane TO mfaplane_mfa;
CREATE SCHEMA mfa AUTHORIZATION mfaplane_mfa;
REVOKE ALL ON SCHEMA mfa FROM PUBLIC;

CREATE ROLE mfaplane_scheduler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'dev-only-scheduler-db-password';
GRANT CONNECT, CREATE ON DATABASE mfaplane TO mfaplane_scheduler;
CREATE SCHEMA scheduler AUTHORIZATION mfaplane_scheduler;
REVOKE ALL ON SCHEMA scheduler FROM PUBLIC;

CREATE ROLE mfaplane_notifier LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'dev-only-notifier-db-password';
GRANT CONNECT, CREATE ON DATABASE mfaplane TO mfaplane_notifier;
CREATE SCHEMA notifier AUTHORIZATION mfaplane_notifier;
REVOKE ALL ON SCHEMA notifier FROM PUBLIC;

CREATE ROLE mfaplane_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD 'dev-only-gateway-db-password';
GRANT CONNECT, CREATE ON DATABASE mfaplane TO mfaplane_gateway;
CREATE SCHEMA gateway AUTHORIZATION mfaplane_gateway;
REVOKE ALL ON SCHEMA gateway FROM PUBLIC;
