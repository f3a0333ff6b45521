-- The text-search indexes of the dead letters take new entries through GIN's pending list.
--
-- With the list off, every dead letter wrote its trigrams (a few hundred for a job's JSON and
-- an error message) straight into both trees, page by page under their locks: when jobs die in
-- numbers (a campaign to people no channel reaches), those inserts were most of Postgres's work
-- and the deaths fell behind the sends. With the list on, an insert appends to the list and the
-- entries go into the trees in bulk, sorted, at the next vacuum or when the list is full. A
-- search reads the list as well as the tree: the limit keeps that read to at most 1 MB.
ALTER INDEX dead_letters_errmsg_trgm SET (fastupdate = on, gin_pending_list_limit = 1024);
ALTER INDEX dead_letters_job_trgm SET (fastupdate = on, gin_pending_list_limit = 1024);
ALTER INDEX dead_letters_raw_trgm SET (fastupdate = on, gin_pending_list_limit = 1024);
