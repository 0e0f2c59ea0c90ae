-- A service may consume in more than one consumer group (the gateway projects its read models in
-- mfaplane-gateway and appends to its audit log in mfaplane-gateway-audit): each group handles every
-- event once, and holds and parks messages, on its own. `consumer_group` names the group by what follows
-- the service's name ('audit'), '' being the service's own group, which every earlier row belongs to.
-- Rebuilding processed_events' key holds the table (its consumers wait): seconds for millions of rows.
ALTER TABLE processed_events ADD COLUMN IF NOT EXISTS consumer_group text NOT NULL DEFAULT '';
ALTER TABLE processed_events DROP CONSTRAINT IF EXISTS processed_events_pkey;
ALTER TABLE processed_events ADD PRIMARY KEY (consumer_group, event_id);

ALTER TABLE held_events ADD COLUMN IF NOT EXISTS consumer_group text NOT NULL DEFAULT '';
ALTER TABLE held_events DROP CONSTRAINT IF EXISTS held_events_pkey;
ALTER TABLE held_events DROP CONSTRAINT IF EXISTS held_events_topic_partition_event_id_key;
ALTER TABLE held_events ADD PRIMARY KEY (consumer_group, topic, partition, "offset");
ALTER TABLE held_events ADD UNIQUE (consumer_group, topic, partition, event_id);

ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS consumer_group text NOT NULL DEFAULT '';
ALTER TABLE dead_letters DROP CONSTRAINT IF EXISTS dead_letters_topic_partition_offset_key;
ALTER TABLE dead_letters ADD UNIQUE (consumer_group, topic, partition, "offset");

-- The groups beside the service's own that have started: one starts, the first time only, from the offsets
-- of the service's own group (consumer.py), whose work it takes over.
CREATE TABLE IF NOT EXISTS consumer_groups (
    consumer_group text PRIMARY KEY,
    started_at     timestamptz NOT NULL DEFAULT now()
);
