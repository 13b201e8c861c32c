-- +goose Up
-- Booking and cancelling change a battery's status twice per booking. With
-- status in an index, every such update wrote a new entry into each of the
-- table's indexes and left a dead one behind, which the next lookup of the
-- station's batteries had to step over. Indexed by station alone (a station
-- holds a handful of batteries), and with room left on each page, the
-- update is a heap-only (HOT) one: no index is touched.
DROP INDEX batteries_station_status;
CREATE INDEX batteries_station ON batteries (station_id);
ALTER TABLE batteries SET (fillfactor = 50);

-- +goose Down
ALTER TABLE batteries RESET (fillfactor);
DROP INDEX batteries_station;
CREATE INDEX batteries_station_status ON batteries (station_id, status, charge_percent DESC, id);
