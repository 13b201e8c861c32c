-- One booking (book + cancel) as the pipelined pgx path of aa6155c sent it
-- to PostgreSQL (the change statements are those of store/booking.go's
-- pgBook and pgRelease today, which the server now sends through GORM in
-- more round trips, without SET LOCAL), for pgbench: the database's own ceiling, with no
-- HTTP server and no Go on the machine. Payload sizes are typical of the
-- real events. Run with scripts/bench-pg-ceiling.sh.
\set u :client_id + 1
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT id, name, status FROM stations WHERE id = :u FOR UPDATE;
WITH st AS (SELECT status, updated_at FROM stations WHERE id = :u),
inv AS (SELECT COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS available, COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS booked, COALESCE(SUM(CASE WHEN status = 'charging' THEN 1 ELSE 0 END), 0) AS charging, COUNT(*) AS total, GREATEST(now(), max(batteries.updated_at), (SELECT updated_at FROM st)) AS at FROM batteries WHERE station_id = :u),
pick AS (SELECT id, status FROM batteries WHERE station_id = :u AND status IN ('available','charging') AND (SELECT status FROM st) = 'open' ORDER BY CASE status WHEN 'available' THEN 0 ELSE 1 END, charge_percent DESC, id LIMIT 1),
claimed AS (UPDATE batteries SET status = 'booked', updated_at = inv.at FROM pick, inv WHERE batteries.id = pick.id AND batteries.status IN ('available','charging') RETURNING batteries.id, batteries.serial_number, batteries.charge_percent, pick.status AS was, inv.at),
booked AS (INSERT INTO bookings (user_id, station_id, battery_id, status, idempotency_key, expires_at, ready_at, created_at, updated_at) SELECT :u, :u, id, CASE WHEN charge_percent >= 80 THEN 'ready' ELSE 'confirmed' END, NULL, at + 300000000 * interval '1 microsecond', CASE WHEN charge_percent >= 80 THEN at END, at, at FROM claimed RETURNING id, battery_id, status, expires_at, ready_at, created_at)
SELECT booked.id AS bid, nextval('notifications_id_seq') AS n1, CASE booked.status WHEN 'ready' THEN nextval('notifications_id_seq') END AS n2 FROM booked JOIN claimed ON claimed.id = booked.battery_id CROSS JOIN inv \gset
WITH n AS (INSERT INTO notifications (id, user_id, type, title, message, level, data, created_at) SELECT id, :u, 't', 'title', 'message message message message message', 'info', '{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}', now() FROM unnest(ARRAY[:n1, :n2]::bigint[]) AS id)
INSERT INTO events (type, topic, payload, created_at) SELECT 'x', 'station:' || :u, repeat('p', 350), now() FROM generate_series(1,4);
COMMIT;
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT id, name, status FROM stations WHERE id = (SELECT station_id FROM bookings WHERE id = :bid) FOR UPDATE;
WITH b AS (SELECT b.station_id, GREATEST(now(), b.updated_at, s.updated_at) AS at FROM bookings AS b JOIN stations AS s ON s.id = b.station_id WHERE b.id = :bid),
inv AS (SELECT COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS available, COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS booked, COALESCE(SUM(CASE WHEN status = 'charging' THEN 1 ELSE 0 END), 0) AS charging, COUNT(*) AS total, GREATEST(max(batteries.updated_at), (SELECT at FROM b)) AS at FROM batteries WHERE station_id = (SELECT station_id FROM b)),
ended AS (UPDATE bookings SET status = 'cancelled', cancelled_at = inv.at, updated_at = inv.at FROM inv WHERE bookings.id = :bid AND bookings.status IN ('confirmed', 'ready') AND (false OR bookings.user_id = :u) RETURNING bookings.id, bookings.user_id, bookings.station_id, bookings.battery_id, bookings.status, bookings.expires_at, bookings.ready_at, bookings.collected_at, bookings.cancelled_at, bookings.returned_battery_id, bookings.created_at, bookings.updated_at),
returned AS (UPDATE batteries SET status = CASE WHEN batteries.charge_percent >= 80 THEN 'available' ELSE 'charging' END, updated_at = ended.updated_at FROM ended, batteries AS old WHERE batteries.id = ended.battery_id AND old.id = batteries.id RETURNING old.status AS was, batteries.status AS now)
SELECT ended.id, nextval('notifications_id_seq') AS n3 FROM ended CROSS JOIN returned CROSS JOIN inv \gset
WITH n AS (INSERT INTO notifications (id, user_id, type, title, message, level, data, created_at) SELECT id, :u, 't', 'title', 'message', 'info', '{}', now() FROM unnest(ARRAY[:n3]::bigint[]) AS id)
INSERT INTO events (type, topic, payload, created_at) SELECT 'x', 'station:' || :u, repeat('p', 350), now() FROM generate_series(1,3);
COMMIT;
