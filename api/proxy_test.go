package api_test

import (
	"net"
	"net/http"
	"testing"

	"batteryswap/api"
)

// The client address that per-address limits count comes from
// X-Forwarded-For only when the peer is a trusted proxy (loopback by
// default), read from the right past trusted proxies only: a private
// address is not trusted unless listed. Each case's login attempts are
// limited to one per client, so a second attempt from the same client is
// 429 and one from another client is not.
func TestTrustedProxiesDecideTheClientAddress(t *testing.T) {
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tt := range []struct {
		name    string
		trusted []*net.IPNet // nil: the default, loopback
		first   string       // X-Forwarded-For of the first attempt
		second  string       // of the second
		same    bool         // the two are one client: the second is refused
	}{
		{"trusted peer, one client", nil, "203.0.113.1", "203.0.113.1", true},
		{"trusted peer, two clients", nil, "203.0.113.1", "203.0.113.2", false},
		{"a private hop is not trusted by default", nil, "198.51.100.1, 10.0.0.5", "198.51.100.2, 10.0.0.5", true},
		{"a listed private hop is trusted", []*net.IPNet{cidr("127.0.0.0/8"), cidr("10.0.0.0/8")},
			"198.51.100.1, 10.0.0.5", "198.51.100.2, 10.0.0.5", false},
		{"untrusted peer: the header is ignored", []*net.IPNet{cidr("10.0.0.0/8")}, "203.0.113.1", "203.0.113.2", true},
		{"no one trusted", []*net.IPNet{}, "203.0.113.1", "203.0.113.2", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newAPIEnv(t, "sqlite", func(c *api.Config) {
				c.AuthRateLimit = 0.001 // a burst of one attempt per client
				c.TrustedProxies = tt.trusted
			})
			login := func(xff string) response {
				return e.do(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": "x@example.com", "password": "wrong-password"},
					"X-Forwarded-For", xff)
			}
			wantError(t, login(tt.first), http.StatusUnauthorized, "unauthorized")
			r := login(tt.second)
			if tt.same {
				wantError(t, r, http.StatusTooManyRequests, "rate_limited")
			} else {
				wantError(t, r, http.StatusUnauthorized, "unauthorized")
			}
		})
	}
}
