-- Text search in dead letters ("text in the job or WeChat's message") without a scan: one
-- trigram GIN index per searched column. The filter's
--   errmsg ILIKE p OR job::text ILIKE p OR raw ILIKE p
-- becomes a BitmapOr of the three index scans, whatever else the filter pins (pg_trgm is in
-- PostgreSQL's contrib, shipped with the server packages). Patterns shorter than three
-- characters have no trigram and still scan. fastupdate is off: dead letters arrive a few at a
-- time, and a search would otherwise read GIN's whole pending list of recent entries linearly.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX dead_letters_errmsg_trgm ON dead_letters USING gin (errmsg gin_trgm_ops) WITH (fastupdate = off);
CREATE INDEX dead_letters_job_trgm ON dead_letters USING gin ((job::text) gin_trgm_ops) WITH (fastupdate = off);
CREATE INDEX dead_letters_raw_trgm ON dead_letters USING gin (raw gin_trgm_ops) WITH (fastupdate = off);
