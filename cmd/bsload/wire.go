package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// wire is one rider's keep-alive HTTP/1.1 connection for the booking loop:
// it writes each request from a reused buffer and reads the answer on the
// calling goroutine. net/http's client spends two goroutines, channel hand-
// offs and header maps per request, and bsload runs on the machine it
// measures, so what it spends the server under test does not get
// (docs/BENCHMARKS.md). Setup and checks keep the ordinary client.
type wire struct {
	addr, host, auth string
	timeout          time.Duration
	conn             net.Conn
	r                *bufio.Reader
	buf              []byte
}

// wire opens (lazily) a lean connection with a's token; a's base must be
// an http:// URL.
func (a *api) wire() (*wire, error) {
	u, err := url.Parse(a.base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, errors.New("the booking loop speaks plain http:// only")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &wire{addr: addr, host: u.Host, auth: "Bearer " + a.token, timeout: a.http.Timeout}, nil
}

// book books at a station and returns the booking's id.
func (w *wire) book(ctx context.Context, stationID int64) (int64, error) {
	var out struct {
		ID int64 `json:"id"`
	}
	body := strconv.AppendInt([]byte(`{"station_id":`), stationID, 10)
	err := w.post(ctx, "/api/v1/bookings", append(body, '}'), &out)
	if err == nil && out.ID == 0 {
		err = errors.New("POST /api/v1/bookings: the answer has no booking id")
	}
	return out.ID, err
}

// cancel cancels a booking.
func (w *wire) cancel(ctx context.Context, id int64) error {
	return w.post(ctx, "/api/v1/bookings/"+strconv.FormatInt(id, 10)+"/cancel", []byte("{}"), nil)
}

// post sends one JSON POST and decodes its answer as api.do does. After any
// transport failure the connection is dropped; the next request dials again.
func (w *wire) post(ctx context.Context, path string, body []byte, out any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.conn == nil {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", w.addr)
		if err != nil {
			return err
		}
		w.conn, w.r = c, bufio.NewReader(c)
	}
	deadline := time.Now().Add(w.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = w.conn.SetDeadline(deadline)
	// An interrupted run ends the request at once. The interrupt may also
	// land after the answer has been read, on its own goroutine: wait for it
	// and drop the connection, so that no late deadline hits the next request.
	c, interrupted := w.conn, make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
			w.close()
		}
	}()
	b := append(w.buf[:0], "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	b = append(b, "\r\nAuthorization: "...)
	b = append(b, w.auth...)
	b = append(b, "\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	w.buf = b
	if _, err := w.conn.Write(b); err != nil {
		return w.fail(ctx, err)
	}
	resp, err := http.ReadResponse(w.r, nil)
	if err != nil {
		return w.fail(ctx, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil {
		return w.fail(ctx, err)
	}
	if resp.Close {
		w.close()
	}
	return answer(http.MethodPost, path, resp.StatusCode, data, out)
}

// fail drops the connection; an interrupted run reports ctx's error.
func (w *wire) fail(ctx context.Context, err error) error {
	w.close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (w *wire) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn, w.r = nil, nil
	}
}
