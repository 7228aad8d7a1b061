-- The outbox of events for other systems (src/store/outbox.rs), written in
-- the transaction of each change. Not tied to conversations by a foreign
-- key: a conversation's deletion must leave its events, the last of which
-- says it was deleted.
CREATE TABLE outbox (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    conversation_id uuid        NOT NULL,
    kind            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    -- Text, not jsonb: published byte for byte as written.
    payload         text        NOT NULL,
    -- The exporter publishing the row, until when; NULL: unclaimed.
    claimed_by      text,
    claimed_until   timestamptz
);

-- Claims: is an earlier row of the conversation claimed?
CREATE INDEX outbox_by_conversation ON outbox (conversation_id, seq);
