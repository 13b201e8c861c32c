-- +goose Up
-- The first answer to a booking request with an Idempotency-Key, returned
-- again as it was when the same key comes back.
ALTER TABLE bookings ADD COLUMN idempotency_response TEXT;

-- +goose Down
ALTER TABLE bookings DROP COLUMN idempotency_response;
