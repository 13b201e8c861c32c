// Package models holds batteryswap's domain types and rules: stations,
// batteries, bookings, users, notifications and events, their typed statuses,
// the stream topics, and the one error type with its stable codes. It imports
// nothing of the project's own.
package models

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code that clients can rely on.
type Code string

// The error codes of the public contract.
const (
	CodeInvalidRequest      Code = "invalid_request"
	CodeInvalidCursor       Code = "invalid_cursor"
	CodeUnauthorized        Code = "unauthorized"
	CodeForbidden           Code = "forbidden"
	CodeNotFound            Code = "not_found"
	CodeEmailTaken          Code = "email_taken"
	CodeNoBatteryAvailable  Code = "no_battery_available"
	CodeStationUnavailable  Code = "station_unavailable"
	CodeActiveBookingExists Code = "active_booking_exists"
	CodeInvalidState        Code = "invalid_state"
	CodeBatteryNotReady     Code = "battery_not_ready"
	// CodeBatteryNotReturnable: a swap-in named a known pack that is not
	// out with a rider (at a station, in maintenance or booked).
	CodeBatteryNotReturnable Code = "battery_not_returnable"
	CodeConflict             Code = "conflict"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeUnsupportedMedia     Code = "unsupported_media_type"
	CodeValidationFailed     Code = "validation_failed"
	CodeRateLimited          Code = "rate_limited"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeServiceUnavailable   Code = "service_unavailable"
	CodeInternal             Code = "internal"
	CodeIdempotencyMismatch  Code = "idempotency_key_reused"
	CodeRequestTimeout       Code = "request_timeout"
	CodeHeadersTooLarge      Code = "headers_too_large"
)

// Error is the domain error: a stable code, a sentence for people and, for
// validation failures, the message for each offending field. Callers find it
// through %w wrapping with errors.As.
type Error struct {
	Code    Code
	Message string
	Fields  map[string]string
}

// Error implements the error interface.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ValidationError returns a validation_failed error naming each bad field.
// It returns nil when fields is empty, so callers can collect then check.
func ValidationError(fields map[string]string) error {
	if len(fields) == 0 {
		return nil
	}
	return &Error{Code: CodeValidationFailed, Message: "the request has invalid fields", Fields: fields}
}

// ErrorCode returns the code of err's *Error, or CodeInternal when err carries none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code Code) bool { return err != nil && ErrorCode(err) == code }
