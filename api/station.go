package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

func (s *Server) registerStationRoutes(g *echo.Group) {
	g.GET("/stations", s.handleStationList)
	g.POST("/stations", s.handleStationCreate, s.requireAdmin)
	g.GET("/stations/:id", s.handleStationGet)
	g.PATCH("/stations/:id", s.handleStationUpdate, s.requireAdmin)
}

func (s *Server) handleStationList(c echo.Context) error {
	p, err := pageParams(c)
	if err != nil {
		return err
	}
	list, err := s.store.ListStations(c.Request().Context(), p.Ahead())
	if err != nil {
		return err
	}
	return renderPage(c, "stations", list, p, func(x models.Station) int64 { return x.ID })
}

func (s *Server) handleStationGet(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	st, err := s.store.FindStationByID(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

type stationCreateRequest struct {
	Name      *string               `json:"name"`
	Address   *string               `json:"address"`
	Latitude  *float64              `json:"latitude"`
	Longitude *float64              `json:"longitude"`
	Status    *models.StationStatus `json:"status"`
}

func (s *Server) handleStationCreate(c echo.Context) error {
	var req stationCreateRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if err := models.ValidationError(required(map[string]any{"name": req.Name, "address": req.Address, "latitude": req.Latitude, "longitude": req.Longitude})); err != nil {
		return err
	}
	in := models.StationInput{Name: *req.Name, Address: *req.Address, Latitude: *req.Latitude, Longitude: *req.Longitude}
	if req.Status != nil {
		in.Status = *req.Status
		if in.Status == "" {
			return models.ValidationError(map[string]string{"status": "must be open, closed or maintenance"})
		}
	}
	st, err := s.store.CreateStation(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, st)
}

type stationPatchRequest struct {
	Name      *string               `json:"name"`
	Address   *string               `json:"address"`
	Latitude  *float64              `json:"latitude"`
	Longitude *float64              `json:"longitude"`
	Status    *models.StationStatus `json:"status"`
	Message   *string               `json:"message"`
}

func (s *Server) handleStationUpdate(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req stationPatchRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	st, err := s.store.UpdateStation(c.Request().Context(), id, models.StationPatch(req))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}
