-- psm schema version 2: the index `list_users` walks, in its order (created_at, then id; `id` is
-- COLLATE "C", so ties are ordered bytewise as in every provider). A permission filter is applied
-- to the rows as the walk meets them.

CREATE INDEX users_created_idx ON users (created_at, id);
