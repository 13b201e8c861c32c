package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// checkTarget parses a base URL and refuses a host that is not loopback
// unless allowRemote: a load generator must not be pointed at someone
// else's server by a typo.
func checkTarget(ctx context.Context, raw string, allowRemote bool, lookup func(context.Context, string) ([]net.IP, error)) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("-url %q: want http://HOST:PORT", raw)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("-url %q has no host", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if allowRemote {
		return u, nil
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else if ips, err = lookup(ctx, host); err != nil {
		return nil, fmt.Errorf("-url host %q: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("-url host %q resolves to nothing", host)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("-url host %q (%s) is not a loopback address; pass -allow-remote to load a remote server", host, ip)
		}
	}
	return u, nil
}

// lookupIP resolves a host name with the default resolver.
func lookupIP(ctx context.Context, host string) ([]net.IP, error) {
	return net.DefaultResolver.LookupIP(ctx, "ip", host)
}

// sourceIPs expands -source-ips: "" means the kernel's choice; "N" means
// 127.0.0.1 … 127.0.0.N; otherwise a comma-separated list of addresses.
func sourceIPs(spec string) ([]net.IP, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	var n int
	if _, err := fmt.Sscanf(spec, "%d", &n); err == nil && fmt.Sprint(n) == spec {
		if n < 1 || n > 254 {
			return nil, fmt.Errorf("-source-ips %d: want 1–254", n)
		}
		out := make([]net.IP, n)
		for i := range out {
			out[i] = net.IPv4(127, 0, 0, byte(i+1))
		}
		return out, nil
	}
	var out []net.IP
	for _, s := range strings.Split(spec, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("-source-ips: %q is not an IP address", s)
		}
		out = append(out, ip)
	}
	return out, nil
}
