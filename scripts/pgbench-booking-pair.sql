-- One booking (book + cancel) as the server sends it to PostgreSQL
-- (store/booking_pg.go), for pgbench: the database's own ceiling, with no
-- HTTP server and no Go on the machine. Payload sizes are typical of the
-- real events. Run with scripts/bench-pg-ceiling.sh.
\set u :client_id + 1
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT id, name, status FROM stations WHERE id = :u FOR UPDATE;
WITH pick AS (SELECT id, status FROM batteries WHERE station_id = :u AND status IN ('available','charging') AND EXISTS (SELECT 1 FROM stations WHERE id = :u AND status = 'open') ORDER BY CASE status WHEN 'available' THEN 0 ELSE 1 END, charge_percent DESC, id LIMIT 1),
claimed AS (UPDATE batteries SET status = 'booked', updated_at = now() FROM pick WHERE batteries.id = pick.id AND batteries.status IN ('available','charging') RETURNING batteries.id, batteries.serial_number, batteries.charge_percent, pick.status AS was),
booked AS (INSERT INTO bookings (user_id, station_id, battery_id, status, expires_at, ready_at, created_at, updated_at) SELECT :u, :u, id, 'ready', now(), now(), now(), now() FROM claimed RETURNING id, battery_id, status),
inv AS (SELECT count(*) FILTER (WHERE status = 'available') AS available, count(*) FILTER (WHERE status = 'booked') AS booked, count(*) FILTER (WHERE status = 'charging') AS charging, count(*) AS total FROM batteries WHERE station_id = :u)
SELECT booked.id AS bid, ARRAY(SELECT nextval('notifications_id_seq') FROM generate_series(1, 2)) AS nids FROM booked JOIN claimed ON claimed.id = booked.battery_id CROSS JOIN inv \gset
WITH n AS (INSERT INTO notifications (id, user_id, type, title, message, level, data, created_at) SELECT id, :u, 't', 'title', 'message message message message message', 'info', '{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}', now() FROM unnest(:nids::bigint[]) AS id)
INSERT INTO events (type, topic, payload, created_at) SELECT 'x', 'station:' || :u, repeat('p', 350), now() FROM generate_series(1,4);
COMMIT;
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT id, name, status FROM stations WHERE id = (SELECT station_id FROM bookings WHERE id = :bid) FOR UPDATE;
WITH ended AS (UPDATE bookings SET status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE id = :bid AND status IN ('confirmed', 'ready') AND (false OR user_id = :u) RETURNING id, user_id, station_id, battery_id, status, expires_at, ready_at, collected_at, cancelled_at, returned_battery_id, created_at, updated_at),
returned AS (UPDATE batteries SET status = CASE WHEN batteries.charge_percent >= 80 THEN 'available' ELSE 'charging' END, updated_at = now() FROM ended, batteries AS old WHERE batteries.id = ended.battery_id AND old.id = batteries.id RETURNING old.status AS was, batteries.status AS now),
inv AS (SELECT count(*) FILTER (WHERE status = 'available') AS available, count(*) FILTER (WHERE status = 'booked') AS booked, count(*) FILTER (WHERE status = 'charging') AS charging, count(*) AS total FROM batteries WHERE station_id = (SELECT station_id FROM bookings WHERE id = :bid))
SELECT ended.id, ARRAY(SELECT nextval('notifications_id_seq') FROM generate_series(1, 1)) AS nids2 FROM ended CROSS JOIN returned CROSS JOIN inv \gset
WITH n AS (INSERT INTO notifications (id, user_id, type, title, message, level, data, created_at) SELECT id, :u, 't', 'title', 'message', 'info', '{}', now() FROM unnest(:nids2::bigint[]) AS id)
INSERT INTO events (type, topic, payload, created_at) SELECT 'x', 'station:' || :u, repeat('p', 350), now() FROM generate_series(1,2);
COMMIT;
