-- +goose Up
-- The deployment's identity, made once with the schema. Access tokens name
-- it in their audience, so a token signed for another database (another
-- deployment that shares JWT_SECRET, or a database restored from one) is
-- refused here even when its user id exists.
CREATE TABLE deployment (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id        TEXT NOT NULL
);
INSERT INTO deployment (singleton, id) VALUES (1, lower(hex(randomblob(16))));

-- Each account's token version, signed into its tokens and checked on every
-- request: logout-all raises it, which ends every token issued before. New
-- accounts start at a random value (see store.CreateUser); existing ones at 0.
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE users DROP COLUMN token_version;
DROP TABLE deployment;
