-- What the messages a `feed-worker replay requeue` sent back came to (replay_outcomes,
-- written by the daemon that applied or dead-lettered them).

-- name: outcomes
-- The outcomes recorded so far for these message ids ($2) of one replay ($1).
SELECT message_id, outcome, variants, applied, stale, rejected, reason
FROM replay_outcomes
WHERE replay_id = $1 AND message_id = ANY($2::text[]);
