-- A campaign's name, for people (the id stays the key), and whether its jobs shorten values
-- that break their key type's length rule instead of being refused.
ALTER TABLE campaigns
    ADD COLUMN name text CONSTRAINT campaigns_name_length
        CHECK (name IS NULL OR char_length(name) BETWEEN 1 AND 120),
    ADD COLUMN truncate boolean NOT NULL DEFAULT false;
