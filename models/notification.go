package models

import (
	"encoding/json"
	"strings"
	"time"
)

// Level is a notification's severity.
type Level string

// The levels.
const (
	LevelInfo    Level = "info"
	LevelWarning Level = "warning"
	LevelError   Level = "error"
)

// Valid reports whether l is a known level.
func (l Level) Valid() bool { return l == LevelInfo || l == LevelWarning || l == LevelError }

// Notification is a message to one user: an operator's note or a booking event.
type Notification struct {
	ID        int64           `json:"id"`
	UserID    int64           `json:"-"`
	Type      string          `json:"type"`
	Title     string          `json:"title"`
	Message   string          `json:"message"`
	Level     Level           `json:"level"`
	Data      json.RawMessage `json:"data"`
	ReadAt    *time.Time      `json:"read_at"`
	CreatedAt time.Time       `json:"created_at"`
}

// NotificationInput is an operator's message to a user.
type NotificationInput struct {
	UserID  int64
	Title   string
	Message string
	Level   Level
}

// Validate checks the message.
func (in *NotificationInput) Validate() error {
	f := map[string]string{}
	if in.UserID <= 0 {
		f["user_id"] = "is required"
	}
	checkText(f, "title", &in.Title, 200, "is required")
	if strings.TrimSpace(in.Message) == "" {
		f["message"] = "is required"
	} else if longer(in.Message, 2000) {
		f["message"] = "must be at most 2000 characters"
	} else if why := multiLineText(in.Message); why != "" {
		f["message"] = why
	}
	if in.Level == "" {
		f["level"] = "is required"
	} else if !in.Level.Valid() {
		f["level"] = "must be info, warning or error"
	}
	return ValidationError(f)
}

// Page is a keyset page: items with id after Cursor (0 = from the start), at most Limit.
type Page struct {
	Limit  int
	Cursor int64
}

// Ahead is the page with one item more than it shows: the API lists with it
// to tell whether another page follows, without a page that comes back empty.
func (p Page) Ahead() Page { return Page{Limit: p.Limit + 1, Cursor: p.Cursor} }

// Page limits.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)
