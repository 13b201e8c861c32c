package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

func (s *Server) registerNotificationRoutes(g *echo.Group) {
	g.GET("/notifications", s.handleNotificationList, s.requireUser)
	g.POST("/notifications", s.handleNotificationCreate, s.requireAdmin)
	g.POST("/notifications/:id/read", s.handleNotificationRead, s.requireUser)
}

func (s *Server) handleNotificationList(c echo.Context) error {
	p, err := pageParams(c)
	if err != nil {
		return err
	}
	unread := false
	switch c.QueryParam("unread") {
	case "", "false", "0":
	case "true", "1":
		unread = true
	default:
		return models.ValidationError(map[string]string{"unread": "must be true or false"})
	}
	list, err := s.store.ListNotifications(c.Request().Context(), currentUser(c).ID, unread, p.Ahead())
	if err != nil {
		return err
	}
	return renderPage(c, "notifications", list, p, func(x models.Notification) int64 { return x.ID })
}

func (s *Server) handleNotificationRead(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := bindJSON(c, &struct{}{}, true); err != nil {
		return err
	}
	n, err := s.store.MarkNotificationRead(c.Request().Context(), id, currentUser(c).ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, n)
}

type notificationCreateRequest struct {
	UserID  *int64       `json:"user_id"`
	Title   string       `json:"title"`
	Message string       `json:"message"`
	Level   models.Level `json:"level"`
}

func (s *Server) handleNotificationCreate(c echo.Context) error {
	var req notificationCreateRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	in := models.NotificationInput{Title: req.Title, Message: req.Message, Level: req.Level}
	if req.UserID != nil {
		in.UserID = *req.UserID
	}
	n, err := s.store.CreateNotification(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, n)
}
