package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

func (s *Server) registerBookingRoutes(g *echo.Group) {
	perUser := s.rateLimit("booking", s.cfg.BookingRateLimit, func(c echo.Context) string {
		return strconv.FormatInt(currentUser(c).ID, 10)
	})
	g.POST("/bookings", s.handleBookingCreate, s.requireUser, perUser)
	g.GET("/bookings", s.handleBookingList, s.requireUser)
	g.GET("/bookings/:id", s.handleBookingGet, s.requireUser)
	g.POST("/bookings/:id/collect", s.handleBookingCollect, s.requireUser, perUser)
	g.POST("/bookings/:id/cancel", s.handleBookingCancel, s.requireUser, perUser)
}

type bookingCreateRequest struct {
	StationID *int64 `json:"station_id"`
}

func (s *Server) handleBookingCreate(c echo.Context) error {
	var req bookingCreateRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if req.StationID == nil {
		return models.ValidationError(map[string]string{"station_id": "is required"})
	}
	if *req.StationID <= 0 {
		return models.ValidationError(map[string]string{"station_id": "must be a positive id"})
	}
	key := strings.TrimSpace(c.Request().Header.Get("Idempotency-Key"))
	if len(key) > models.MaxIdempotencyKeyLength {
		// A header is bytes (RFC 9110 §5.5), so the limit is counted in bytes.
		return models.ValidationError(map[string]string{"Idempotency-Key": fmt.Sprintf("must be at most %d bytes", models.MaxIdempotencyKeyLength)})
	}
	b, replayed, err := s.store.CreateBooking(c.Request().Context(), currentUser(c).ID, *req.StationID, key)
	s.metrics.booking(err, replayed)
	if err != nil {
		return err
	}
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSON(http.StatusCreated, b)
}

func (s *Server) handleBookingList(c echo.Context) error {
	p, err := pageParams(c)
	if err != nil {
		return err
	}
	u := currentUser(c)
	f := models.BookingFilter{UserID: &u.ID, Page: p.Ahead()}
	if u.IsAdmin() {
		f.UserID = nil
		if v := c.QueryParam("user_id"); v != "" {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id <= 0 {
				return models.ValidationError(map[string]string{"user_id": "must be a positive id"})
			}
			f.UserID = &id
		}
	}
	list, err := s.store.ListBookings(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return renderPage(c, "bookings", list, p, func(x models.Booking) int64 { return x.ID })
}

// visibleBooking loads a booking the caller may see: their own, or any for an
// admin. Another user's booking is not_found, so ids reveal nothing.
func (s *Server) visibleBooking(c echo.Context) (*models.Booking, error) {
	id, err := pathID(c, "id")
	if err != nil {
		return nil, err
	}
	b, err := s.store.FindBookingByID(c.Request().Context(), id)
	if err != nil {
		return nil, err
	}
	if u := currentUser(c); !u.IsAdmin() && b.UserID != u.ID {
		return nil, models.Errorf(models.CodeNotFound, "booking not found")
	}
	return b, nil
}

func (s *Server) handleBookingGet(c echo.Context) error {
	b, err := s.visibleBooking(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

type collectRequest struct {
	ReturnSerialNumber  *string `json:"return_serial_number"`
	ReturnChargePercent *int    `json:"return_charge_percent"`
}

func (s *Server) handleBookingCollect(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req collectRequest
	if err := bindJSON(c, &req, true); err != nil {
		return err
	}
	var ret *models.ReturnPack
	switch {
	case req.ReturnSerialNumber != nil && req.ReturnChargePercent != nil:
		ret = &models.ReturnPack{SerialNumber: *req.ReturnSerialNumber, ChargePercent: *req.ReturnChargePercent}
	case req.ReturnSerialNumber != nil:
		return models.ValidationError(map[string]string{"return_charge_percent": "is required with return_serial_number"})
	case req.ReturnChargePercent != nil:
		return models.ValidationError(map[string]string{"return_serial_number": "is required with return_charge_percent"})
	}
	b, err := s.store.CollectBooking(c.Request().Context(), id, currentUser(c), ret)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func (s *Server) handleBookingCancel(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := bindJSON(c, &struct{}{}, true); err != nil {
		return err
	}
	b, err := s.store.CancelBooking(c.Request().Context(), id, currentUser(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}
