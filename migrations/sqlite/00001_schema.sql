-- +goose Up
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE stations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL DEFAULT '',
    latitude   REAL NOT NULL DEFAULT 0,
    longitude  REAL NOT NULL DEFAULT 0,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'maintenance')),
    message    TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE batteries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id     BIGINT REFERENCES stations (id),
    serial_number  TEXT NOT NULL UNIQUE,
    charge_percent INTEGER NOT NULL CHECK (charge_percent BETWEEN 0 AND 100),
    health_percent INTEGER NOT NULL DEFAULT 100 CHECK (health_percent BETWEEN 0 AND 100),
    capacity_kwh   REAL NOT NULL DEFAULT 2,
    status         TEXT NOT NULL CHECK (status IN ('available', 'charging', 'booked', 'collected', 'maintenance')),
    created_at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX batteries_station_status ON batteries (station_id, status, charge_percent DESC, id);

CREATE TABLE bookings (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             BIGINT NOT NULL REFERENCES users (id),
    station_id          BIGINT NOT NULL REFERENCES stations (id),
    battery_id          BIGINT NOT NULL REFERENCES batteries (id),
    status              TEXT NOT NULL CHECK (status IN ('confirmed', 'ready', 'collected', 'cancelled', 'expired')),
    idempotency_key     TEXT,
    expires_at          DATETIME NOT NULL,
    warned_at           DATETIME,
    ready_at            DATETIME,
    collected_at        DATETIME,
    cancelled_at        DATETIME,
    returned_battery_id BIGINT REFERENCES batteries (id),
    created_at          DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at          DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- The database itself refuses a second active booking per user or per battery.
CREATE UNIQUE INDEX bookings_active_user ON bookings (user_id) WHERE status IN ('confirmed', 'ready');
CREATE UNIQUE INDEX bookings_active_battery ON bookings (battery_id) WHERE status IN ('confirmed', 'ready');
CREATE UNIQUE INDEX bookings_idempotency ON bookings (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX bookings_active_expiry ON bookings (expires_at) WHERE status IN ('confirmed', 'ready');
CREATE INDEX bookings_user ON bookings (user_id, id);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    message    TEXT NOT NULL,
    level      TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
    data       TEXT NOT NULL DEFAULT '{}',
    read_at    DATETIME,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX notifications_user ON notifications (user_id, id);

-- The outbox: rows are written in the transaction of their change with no
-- seq; the one relay gives them seq in commit order.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    seq        BIGINT UNIQUE,
    type       TEXT NOT NULL,
    topic      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
CREATE INDEX events_topic_seq ON events (topic, seq);

CREATE TABLE relay_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq      BIGINT NOT NULL DEFAULT 0,
    published_seq BIGINT NOT NULL DEFAULT 0,
    trimmed_seq   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO relay_state (id) VALUES (1);

-- +goose Down
DROP TABLE relay_state;
DROP TABLE events;
DROP TABLE notifications;
DROP TABLE bookings;
DROP TABLE batteries;
DROP TABLE stations;
DROP TABLE users;
