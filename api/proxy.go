package api

import (
	"net"

	"github.com/labstack/echo/v4"
)

// loopback is the default of TrustedProxies: a proxy on the same host.
var loopback = []*net.IPNet{
	{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
	{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
}

// clientIP is how a request's client address (RealIP, which per-address
// limits count) is found: the peer's own address, unless the peer is one
// of the trusted proxies; then X-Forwarded-For is read from the right,
// past the trusted proxies, and the first address that is not one is the
// client. Only the listed ranges are trusted: Echo's default would also
// trust every private and link-local address, so a client that reached an
// instance directly from inside a private network could name any address
// and escape the limits.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
