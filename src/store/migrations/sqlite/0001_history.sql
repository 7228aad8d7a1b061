-- Durable history, SQLite. Ids are hyphenated lowercase UUID text; times are
-- integer microseconds since the Unix epoch (UTC).

CREATE TABLE conversations (
    id         TEXT    PRIMARY KEY NOT NULL,
    owner      TEXT    NOT NULL,
    title      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Listing: an owner's conversations, newest first, ties by id.
CREATE INDEX conversations_by_owner ON conversations (owner, updated_at DESC, id DESC);

CREATE TABLE messages (
    -- A stable integer key for the full-text index (external content needs
    -- one that VACUUM never renumbers, hence INTEGER PRIMARY KEY).
    seq               INTEGER PRIMARY KEY,
    id                TEXT    NOT NULL UNIQUE,
    conversation_id   TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position          INTEGER NOT NULL CHECK (position >= 0),
    role              TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('streaming', 'complete', 'cancelled', 'failed')),
    model             TEXT,
    error             TEXT,
    finish_reason     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    created_at        INTEGER NOT NULL
);

-- Reading a conversation in order (and the cascade of its deletion).
CREATE INDEX messages_by_conversation ON messages (conversation_id, position);
-- Replies still streaming, for recovery after a restart.
CREATE INDEX messages_streaming ON messages (conversation_id, position) WHERE status = 'streaming';

CREATE TABLE deleted_conversations (
    id         TEXT    PRIMARY KEY NOT NULL,
    deleted_at INTEGER NOT NULL
);

-- Full-text search: an external-content FTS5 index over messages.content, kept
-- in sync by the triggers below. remove_diacritics 2 folds every diacritic
-- ("tieng viet" finds "tiếng Việt").
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
END;
