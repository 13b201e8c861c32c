//go:build tools

// Package tools pins dependencies that the code takes up step by step.
package tools

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/chromedp/chromedp"
	_ "github.com/coder/websocket"
	_ "github.com/glebarez/sqlite"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/labstack/echo/v4"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/r3labs/sse/v2"
	_ "github.com/redis/go-redis/v9"
	_ "go.uber.org/goleak"
	_ "golang.org/x/crypto/bcrypt"
	_ "gorm.io/driver/postgres"
	_ "gorm.io/gorm"
)
