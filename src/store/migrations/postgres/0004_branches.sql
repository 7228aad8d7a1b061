-- Versions and branches (contract 1.2): every message names the one it
-- follows; messages with the same parent are versions of one another. A
-- conversation written before had no branches: each message followed the one
-- before it, which is what its parent becomes.

ALTER TABLE messages ADD COLUMN parent_id uuid;

UPDATE messages
SET parent_id = previous.id
FROM messages AS previous
WHERE previous.conversation_id = messages.conversation_id
  AND previous.position = messages.position - 1;
