-- +goose Up
-- As on PostgreSQL: a battery's status changes twice per booking, so it is
-- not indexed; a station holds a handful of batteries.
DROP INDEX batteries_station_status;
CREATE INDEX batteries_station ON batteries (station_id);

-- +goose Down
DROP INDEX batteries_station;
CREATE INDEX batteries_station_status ON batteries (station_id, status, charge_percent DESC, id);
