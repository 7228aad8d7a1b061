-- Durable history, PostgreSQL.

CREATE TABLE conversations (
    id         uuid        PRIMARY KEY,
    owner      uuid        NOT NULL,
    title      text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Listing: an owner's conversations, newest first, ties by id.
CREATE INDEX conversations_by_owner ON conversations (owner, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                uuid        PRIMARY KEY,
    conversation_id   uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position          bigint      NOT NULL CHECK (position >= 0),
    role              text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content           text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('streaming', 'complete', 'cancelled', 'failed')),
    model             text,
    error             text,
    finish_reason     text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    created_at        timestamptz NOT NULL,
    -- Full-text search: words as they are, lowercased; no stemming, no stop
    -- words, no accent folding (the 'simple' configuration).
    search            tsvector    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, content)) STORED
);

-- Reading a conversation in order (and the cascade of its deletion).
CREATE INDEX messages_by_conversation ON messages (conversation_id, position);
-- Replies still streaming, for recovery after a restart.
CREATE INDEX messages_streaming ON messages (conversation_id, position) WHERE status = 'streaming';
CREATE INDEX messages_search ON messages USING gin (search);

CREATE TABLE deleted_conversations (
    id         uuid        PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
