package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

func (s *Server) registerBatteryRoutes(g *echo.Group) {
	g.GET("/stations/:id/batteries", s.handleBatteryList)
	g.POST("/stations/:id/batteries", s.handleBatteryCreate, s.requireAdmin)
	g.PATCH("/batteries/:id", s.handleBatteryUpdate, s.requireAdmin)
}

func (s *Server) handleBatteryList(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	p, err := pageParams(c)
	if err != nil {
		return err
	}
	list, err := s.store.ListBatteries(c.Request().Context(), id, p.Ahead())
	if err != nil {
		return err
	}
	return renderPage(c, "batteries", list, p, func(x models.Battery) int64 { return x.ID })
}

type batteryCreateRequest struct {
	SerialNumber  *string  `json:"serial_number"`
	ChargePercent *int     `json:"charge_percent"`
	CapacityKWh   *float64 `json:"capacity_kwh"`
}

func (s *Server) handleBatteryCreate(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req batteryCreateRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if err := models.ValidationError(required(map[string]any{"serial_number": req.SerialNumber, "charge_percent": req.ChargePercent})); err != nil {
		return err
	}
	b, err := s.store.AddBattery(c.Request().Context(), id, models.BatteryInput{SerialNumber: *req.SerialNumber, ChargePercent: req.ChargePercent, CapacityKWh: req.CapacityKWh})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, b)
}

type batteryPatchRequest struct {
	ChargePercent *int                  `json:"charge_percent"`
	Status        *models.BatteryStatus `json:"status"`
}

func (s *Server) handleBatteryUpdate(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req batteryPatchRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	b, err := s.store.UpdateBattery(c.Request().Context(), id, models.BatteryPatch(req))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}
