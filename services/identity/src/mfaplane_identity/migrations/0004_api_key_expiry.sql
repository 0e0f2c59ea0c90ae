-- When a key was made, by whom (the actor: admin:<id> or operator:cli) and when it stops working
-- (api_keys.py). Keys made before these columns get 90 days from the upgrade: every key expires.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS created_at timestamptz;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS created_by text;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
UPDATE api_keys SET expires_at = now() + interval '90 days' WHERE expires_at IS NULL;
ALTER TABLE api_keys ALTER COLUMN expires_at SET NOT NULL;
