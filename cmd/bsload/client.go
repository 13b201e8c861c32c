package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// apiError is a non-2xx answer: its status and the contract's error code.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// errorCode names an error for the per-code tallies: the contract code of an
// API answer, or the kind of transport failure.
func errorCode(err error) string {
	var ae *apiError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		if ae.Code == "" {
			return "http_" + strconv.Itoa(ae.Status)
		}
		return ae.Code
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "transport"
	}
}

// api is a small client of the REST API with one bearer token.
type api struct {
	base  string
	http  *http.Client
	token string
}

// newHTTPClient is a keep-alive client sized for conns parallel requests.
func newHTTPClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns + 16,
			MaxIdleConnsPerHost: conns + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

func (a *api) with(token string) *api { return &api{base: a.base, http: a.http, token: token} }

// do sends a JSON request and decodes a 2xx answer into out (when non-nil).
func (a *api) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	return answer(method, path, resp.StatusCode, data, out)
}

// answer decodes a 2xx answer's body into out (when non-nil), or returns
// the *apiError that a non-2xx answer's body names.
func answer(method, path string, status int, data []byte, out any) error {
	if status/100 != 2 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		return &apiError{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

type authAnswer struct {
	User struct {
		ID   int64  `json:"id"`
		Role string `json:"role"`
	} `json:"user"`
	Token string `json:"token"`
}

func (a *api) login(ctx context.Context, email, password string) (*authAnswer, error) {
	var out authAnswer
	err := a.do(ctx, http.MethodPost, "/api/v1/auth/login", map[string]string{"email": email, "password": password}, &out)
	return &out, err
}

func (a *api) register(ctx context.Context, email, password, name string) (*authAnswer, error) {
	var out authAnswer
	err := a.do(ctx, http.MethodPost, "/api/v1/auth/register", map[string]string{"email": email, "password": password, "name": name}, &out)
	return &out, err
}

// station is the part of a station the tool checks.
type station struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Available int    `json:"available_batteries"`
	Booked    int    `json:"booked_batteries"`
	Charging  int    `json:"charging_batteries"`
	Total     int    `json:"total_batteries"`
}

type battery struct {
	ID            int64  `json:"id"`
	StationID     *int64 `json:"station_id"`
	SerialNumber  string `json:"serial_number"`
	ChargePercent int    `json:"charge_percent"`
	Status        string `json:"status"`
}

type booking struct {
	ID          int64      `json:"id"`
	UserID      int64      `json:"user_id"`
	StationID   int64      `json:"station_id"`
	BatteryID   int64      `json:"battery_id"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	CollectedAt *time.Time `json:"collected_at"`
	CancelledAt *time.Time `json:"cancelled_at"`
}

func (a *api) createStation(ctx context.Context, name string) (*station, error) {
	var out station
	err := a.do(ctx, http.MethodPost, "/api/v1/stations", map[string]any{
		"name": name, "address": "bsload", "latitude": 52.52, "longitude": 13.40,
	}, &out)
	return &out, err
}

func (a *api) addBattery(ctx context.Context, stationID int64, serial string, charge int) (*battery, error) {
	var out battery
	err := a.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/stations/%d/batteries", stationID),
		map[string]any{"serial_number": serial, "charge_percent": charge}, &out)
	return &out, err
}

func (a *api) patchBattery(ctx context.Context, id int64, charge int) (*battery, error) {
	var out battery
	err := a.do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", id), map[string]any{"charge_percent": charge}, &out)
	return &out, err
}

func (a *api) getStation(ctx context.Context, id int64) (*station, error) {
	var out station
	err := a.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d", id), nil, &out)
	return &out, err
}

// pageAll follows ?limit=200&cursor= pages of path until next_cursor is
// null, calling add with each page's raw list (under key).
func (a *api) pageAll(ctx context.Context, path, key string, add func(json.RawMessage) error) error {
	cursor := ""
	sep := "?"
	if bytes.ContainsRune([]byte(path), '?') {
		sep = "&"
	}
	for pages := 0; ; pages++ {
		if pages > 100000 {
			return errors.New("more than 100000 pages; giving up")
		}
		var page map[string]json.RawMessage
		if err := a.do(ctx, http.MethodGet, path+sep+"limit=200&cursor="+cursor, nil, &page); err != nil {
			return err
		}
		if err := add(page[key]); err != nil {
			return err
		}
		var next *string
		if err := json.Unmarshal(page["next_cursor"], &next); err != nil || next == nil {
			return nil
		}
		cursor = *next
	}
}

func (a *api) listBatteries(ctx context.Context, stationID int64) ([]battery, error) {
	var all []battery
	err := a.pageAll(ctx, fmt.Sprintf("/api/v1/stations/%d/batteries", stationID), "batteries", func(raw json.RawMessage) error {
		var page []battery
		if err := json.Unmarshal(raw, &page); err != nil {
			return err
		}
		all = append(all, page...)
		return nil
	})
	return all, err
}

func (a *api) listBookings(ctx context.Context, path string) ([]booking, error) {
	var all []booking
	err := a.pageAll(ctx, path, "bookings", func(raw json.RawMessage) error {
		var page []booking
		if err := json.Unmarshal(raw, &page); err != nil {
			return err
		}
		all = append(all, page...)
		return nil
	})
	return all, err
}

// parallel runs fn(0) … fn(n-1) on at most workers goroutines and returns
// the first error.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	errc := make(chan error, workers)
	for range min(workers, max(n, 1)) {
		go func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
			errc <- nil
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	for range min(workers, max(n, 1)) {
		<-errc
	}
	return context.Cause(ctx)
}
