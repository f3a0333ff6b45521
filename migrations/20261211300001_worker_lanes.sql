-- The lanes each worker process consumes, for `wxnotify status` and the ops views of workers.
ALTER TABLE workers ADD COLUMN lanes text[] NOT NULL DEFAULT '{}';
