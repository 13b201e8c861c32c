package api

import (
	"context"
	"io/fs"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) registerOpsRoutes() {
	s.echo.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	s.echo.GET("/readyz", s.handleReady)
	if !s.cfg.SeparateMetrics {
		s.echo.GET("/metrics", echo.WrapHandler(s.MetricsHandler()))
	}
	s.echo.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", s.cfg.OpenAPI)
	})
}

// MetricsHandler serves the Prometheus metrics of Config.Registry. Handler
// serves it at /metrics unless Config.SeparateMetrics puts it on a
// listener of its own (METRICS_ADDR), one that only the scraper reaches.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}

// handleReady answers 200 when the database and the broker answer, else 503
// naming the one that failed.
func (s *Server) handleReady(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "broker": "ok"}
	status := http.StatusOK
	if err := s.store.Ping(ctx); err != nil {
		checks["database"], status = "unavailable", http.StatusServiceUnavailable
	}
	if s.broker != nil {
		if err := s.broker.Ping(ctx); err != nil {
			checks["broker"], status = "unavailable", http.StatusServiceUnavailable
		}
	}
	body := map[string]any{"status": "ok", "checks": checks}
	if status != http.StatusOK {
		body["status"] = "unavailable"
		failed := []string{}
		for _, k := range []string{"database", "broker"} {
			if checks[k] != "ok" {
				failed = append(failed, k)
			}
		}
		body["failed"] = failed
	}
	return c.JSON(status, body)
}

func (s *Server) registerWebRoutes() {
	if s.cfg.Web == nil {
		return
	}
	files := http.FileServer(http.FS(s.cfg.Web))
	serve := echo.WrapHandler(files)
	s.echo.GET("/", serve)
	s.echo.GET("/static/*", func(c echo.Context) error {
		if _, err := fs.Stat(s.cfg.Web, c.Request().URL.Path[1:]); err != nil {
			return echo.ErrNotFound
		}
		return serve(c)
	})
}
