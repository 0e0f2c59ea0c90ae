-- A password reset mail belongs to no enrollment, and names the reset whose link it carries; the
-- link's token is made from it at sending time, never stored.
ALTER TABLE notifications ALTER COLUMN enrollment_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS reset_id uuid;
