-- +goose Up
-- Where stations are: GET /stations?near= first narrows to a bounding box
-- of latitude and longitude with this index, then orders by exact distance.
CREATE INDEX stations_location ON stations (latitude, longitude);

-- Whether a station's controller is heard from (a heartbeat or battery
-- telemetry). A station not heard from for STATION_STALE_AFTER is marked
-- offline by the presence sweep and takes no bookings until it reports
-- again. Existing stations count as heard from when this migration runs, so
-- their controllers have STATION_STALE_AFTER to report in.
ALTER TABLE stations ADD COLUMN presence TEXT NOT NULL DEFAULT 'online' CHECK (presence IN ('online', 'offline'));
ALTER TABLE stations ADD COLUMN last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now();
-- The sweep looks for online stations last seen before a cutoff. Partial,
-- so that a query on presence = 'online' alone (?available=true) is never
-- planned through it instead of through the location index.
CREATE INDEX stations_presence_seen ON stations (last_seen_at) WHERE presence = 'online';

-- +goose Down
DROP INDEX stations_presence_seen;
ALTER TABLE stations DROP COLUMN last_seen_at;
ALTER TABLE stations DROP COLUMN presence;
DROP INDEX stations_location;
