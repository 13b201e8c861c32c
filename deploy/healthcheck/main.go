// Command healthcheck is the container health probe of the batteryswap image.
//
// The runtime image is distroless: it has no shell, no curl and no wget, and
// batteryswap has no health sub-command. This static binary is copied beside
// it and run by the image's HEALTHCHECK and by compose.yaml:
//
//	healthcheck [URL]
//
// It GETs URL (default: /readyz on the port of $ADDR, itself defaulting to
// :8080 like the server) and exits 0 on 200, else 1 with the reason on stderr
// (docker inspect shows it), e.g. the 503 body of /readyz that names the
// failed dependency.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// defaultAddr is the server's default listen address (the ADDR entry of
// settings in cmd/batteryswap/config.go).
const defaultAddr = ":8080"

func main() {
	url := target(os.Getenv("ADDR"))
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if err := check(url, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// target is the readiness URL of a server listening on addr, reached from
// inside its own container.
func target(addr string) string {
	if addr == "" {
		addr = defaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "", strings.TrimPrefix(addr, ":")
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz"
}

// check GETs url and succeeds only on 200.
func check(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
