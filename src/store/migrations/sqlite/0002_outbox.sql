-- The outbox of events for other systems (src/store/outbox.rs), written in
-- the transaction of each change. Not tied to conversations by a foreign
-- key: a conversation's deletion must leave its events, the last of which
-- says it was deleted.
CREATE TABLE outbox (
    -- AUTOINCREMENT: a seq is never reused, even after the newest rows are
    -- published and removed, so a conversation's events keep increasing.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    conversation_id TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    -- The exporter publishing the row, until when (µs); NULL: unclaimed.
    claimed_by      TEXT,
    claimed_until   INTEGER
);

-- Claims: is an earlier row of the conversation claimed?
CREATE INDEX outbox_by_conversation ON outbox (conversation_id, seq);
