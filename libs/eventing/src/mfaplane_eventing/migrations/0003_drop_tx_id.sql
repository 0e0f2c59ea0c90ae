-- The writing transaction's id and its index served a reader of the store's global order that
-- nothing uses (consumers read the topics): every append no longer pays for that index.
DROP INDEX IF EXISTS events_global_order;
ALTER TABLE events DROP COLUMN IF EXISTS tx_id;
