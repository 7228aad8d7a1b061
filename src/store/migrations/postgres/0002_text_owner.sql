-- Owners are user ids: a guest's UUID or an identity provider's `sub`
-- (1 to 256 characters), so the column holds text.
ALTER TABLE conversations ALTER COLUMN owner TYPE text USING owner::text;
