package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

func (s *Server) registerStationRoutes(g *echo.Group) {
	g.GET("/stations", s.handleStationList)
	g.POST("/stations", s.handleStationCreate, s.requireAdmin)
	g.GET("/stations/:id", s.handleStationGet)
	g.PATCH("/stations/:id", s.handleStationUpdate, s.requireAdmin)
	g.POST("/stations/:id/heartbeat", s.handleStationHeartbeat, s.requireAdmin)
}

// handleStationList lists stations in id order or, with ?near=LAT,LON,
// nearest first with distance_m (radius_m= limits the distance);
// available=true keeps the stations where a booking would get a ready pack.
// Both are paginated alike: next_cursor is the last station's id.
func (s *Server) handleStationList(c echo.Context) error {
	p, err := pageParams(c)
	if err != nil {
		return err
	}
	f := map[string]string{}
	available := false
	if v := c.QueryParam("available"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f["available"] = "must be true or false"
		}
		available = b
	}
	near, hasNear := c.QueryParams()["near"]
	radius, hasRadius := c.QueryParams()["radius_m"]
	q := models.NearQuery{Available: available, Page: p.Ahead()}
	if hasNear {
		lat, lon, ok := parsePoint(near[0])
		if !ok {
			f["near"] = "must be LAT,LON with latitude between -90 and 90 and longitude between -180 and 180"
		}
		q.Lat, q.Lon = lat, lon
	}
	if hasRadius {
		r, err := strconv.ParseFloat(strings.TrimSpace(radius[0]), 64)
		switch {
		case !hasNear:
			f["radius_m"] = "needs near=LAT,LON"
		case err != nil || math.IsNaN(r) || r <= 0 || r > models.MaxRadiusM:
			f["radius_m"] = fmt.Sprintf("must be a number of metres above 0 and at most %.0f", models.MaxRadiusM)
		}
		q.RadiusM = r
	}
	if err := models.ValidationError(f); err != nil {
		return err
	}
	var list []models.Station
	if hasNear {
		list, err = s.store.NearestStations(c.Request().Context(), q)
	} else {
		list, err = s.store.ListStations(c.Request().Context(), models.StationFilter{Available: available, Page: p.Ahead()})
	}
	if err != nil {
		return err
	}
	return renderPage(c, "stations", list, p, func(x models.Station) int64 { return x.ID })
}

// parsePoint reads "LAT,LON" in decimal degrees.
func parsePoint(v string) (lat, lon float64, ok bool) {
	a, b, found := strings.Cut(v, ",")
	if !found {
		return 0, 0, false
	}
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 != nil || err2 != nil || math.IsNaN(lat) || math.IsNaN(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return 0, 0, false
	}
	return lat, lon, true
}

// handleStationHeartbeat is a station controller reporting in: the
// station counts as heard from now and is online again if it was not.
func (s *Server) handleStationHeartbeat(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := s.store.StationHeartbeat(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
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
