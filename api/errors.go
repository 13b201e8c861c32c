package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

// statusClientClosedRequest is what logs and metrics record for a request
// whose client went away before it was answered (nginx's 499).
const statusClientClosedRequest = 499

// statusOf is the one table from error code to HTTP status.
var statusOf = map[models.Code]int{
	models.CodeInvalidRequest:       http.StatusBadRequest,
	models.CodeInvalidCursor:        http.StatusBadRequest,
	models.CodeUnauthorized:         http.StatusUnauthorized,
	models.CodeForbidden:            http.StatusForbidden,
	models.CodeNotFound:             http.StatusNotFound,
	models.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	models.CodeEmailTaken:           http.StatusConflict,
	models.CodeNoBatteryAvailable:   http.StatusConflict,
	models.CodeStationUnavailable:   http.StatusConflict,
	models.CodeActiveBookingExists:  http.StatusConflict,
	models.CodeInvalidState:         http.StatusConflict,
	models.CodeBatteryNotReady:      http.StatusConflict,
	models.CodeBatteryNotReturnable: http.StatusConflict,
	models.CodeConflict:             http.StatusConflict,
	models.CodeIdempotencyMismatch:  http.StatusConflict,
	models.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	models.CodeRequestTimeout:       http.StatusRequestTimeout,
	models.CodeHeadersTooLarge:      http.StatusRequestHeaderFieldsTooLarge,
	models.CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	models.CodeValidationFailed:     http.StatusUnprocessableEntity,
	models.CodeRateLimited:          http.StatusTooManyRequests,
	models.CodeServiceUnavailable:   http.StatusServiceUnavailable,
	models.CodeInternal:             http.StatusInternalServerError,
}

// codeOfStatus classifies Echo's own errors (unknown route, wrong method,
// body limit) into the contract's codes.
var codeOfStatus = map[int]models.Code{
	http.StatusBadRequest:                  models.CodeInvalidRequest,
	http.StatusUnauthorized:                models.CodeUnauthorized,
	http.StatusForbidden:                   models.CodeForbidden,
	http.StatusNotFound:                    models.CodeNotFound,
	http.StatusMethodNotAllowed:            models.CodeMethodNotAllowed,
	http.StatusRequestTimeout:              models.CodeRequestTimeout,
	http.StatusRequestEntityTooLarge:       models.CodePayloadTooLarge,
	http.StatusRequestHeaderFieldsTooLarge: models.CodeHeadersTooLarge,
	http.StatusUnsupportedMediaType:        models.CodeUnsupportedMedia,
	http.StatusTooManyRequests:             models.CodeRateLimited,
	http.StatusServiceUnavailable:          models.CodeServiceUnavailable,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    models.Code       `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// handleError is Echo's HTTPErrorHandler: every failure becomes the
// contract's JSON error. It uses errors.As, so wrapped errors are seen too.
// Internal errors are logged with the request id and shown as "internal error".
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		// A stream has started writing: the status is gone, so only log.
		if !errors.Is(err, errStreamEnded) {
			s.log.Warn("error after response started", "err", err, "request_id", requestID(c))
		}
		return
	}
	if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
		// The client hung up (while its stream waited for the broker, say):
		// nobody reads an answer, and nothing failed on our side.
		c.Response().Status = statusClientClosedRequest
		s.log.Debug("client closed the request", "method", c.Request().Method, "route", c.Path(), "request_id", requestID(c))
		return
	}
	body := errorBody{}
	status := http.StatusInternalServerError
	var de *models.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &de):
		body.Error = errorDetail{Code: de.Code, Message: de.Message, Fields: de.Fields}
		if st, ok := statusOf[de.Code]; ok {
			status = st
		}
		if status == http.StatusServiceUnavailable && error(de) != err {
			// A dependency's failure under the domain error (the database
			// out of reach): the client gets the code, the log the cause.
			s.log.Warn("request failed: dependency unavailable", "err", err, "method", c.Request().Method, "route", c.Path(), "request_id", requestID(c))
		}
	case errors.As(err, &he):
		status = he.Code
		code, ok := codeOfStatus[status]
		if !ok {
			code = models.CodeInternal
		}
		msg := http.StatusText(status)
		if m, ok := he.Message.(string); ok && status < 500 {
			msg = m
		}
		body.Error = errorDetail{Code: code, Message: msg}
		if status >= 500 {
			s.log.Error("request failed", "err", he.Internal, "status", status, "request_id", requestID(c))
		}
	default:
		body.Error = errorDetail{Code: models.CodeInternal, Message: "internal error"}
	}
	if status == http.StatusInternalServerError {
		body.Error = errorDetail{Code: models.CodeInternal, Message: "internal error"}
		s.log.Error("request failed", "err", err, "method", c.Request().Method, "route", c.Path(), "request_id", requestID(c))
	}
	if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && c.Response().Header().Get("Retry-After") == "" {
		c.Response().Header().Set("Retry-After", "1")
	}
	// For HEAD, net/http sends the header and drops the body.
	if err = c.JSON(status, body); err != nil {
		s.log.Warn("writing error response", "err", err, "request_id", requestID(c))
	}
}

func errInvalid(format string, args ...any) error {
	return models.Errorf(models.CodeInvalidRequest, format, args...)
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}
