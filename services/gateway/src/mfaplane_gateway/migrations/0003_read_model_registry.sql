-- Which versioned table serves each read model. `replay` builds the next version (principals_v2...)
-- from the audit log while the current one serves, then switches this row. For `previous_until`
-- after a switch the projector keeps writing the previous table too, so a gateway still using the
-- name it cached before the switch reads complete data.
CREATE TABLE IF NOT EXISTS read_models (
    name           text PRIMARY KEY,
    current_table  text NOT NULL,
    previous_table text,
    previous_until timestamptz,
    switched_at    timestamptz
);
INSERT INTO read_models (name, current_table)
VALUES ('principals', 'principals_v1'), ('resources', 'resources_v1')
ON CONFLICT (name) DO NOTHING;
