package main

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestCheckTarget(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]net.IP, error) {
		switch host {
		case "localhost":
			return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, nil
		case "mixed.test":
			return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	tests := []struct {
		name   string
		url    string
		remote bool
		ok     bool
	}{
		{"loopback v4", "http://127.0.0.1:8080", false, true},
		{"loopback elsewhere in 127/8", "http://127.0.0.9:8080/", false, true},
		{"loopback v6", "http://[::1]:8080", false, true},
		{"localhost", "http://localhost:8080", false, true},
		{"remote address refused", "http://10.1.2.3:8080", false, false},
		{"a name with one remote address refused", "http://mixed.test:8080", false, false},
		{"unknown name refused", "http://nowhere.test", false, false},
		{"remote allowed with the flag", "http://10.1.2.3:8080", true, true},
		{"no scheme", "127.0.0.1:8080", false, false},
		{"other scheme", "ftp://127.0.0.1", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkTarget(context.Background(), tt.url, tt.remote, lookup)
			if (err == nil) != tt.ok {
				t.Errorf("checkTarget(%q, %v) = %v, want ok=%v", tt.url, tt.remote, err, tt.ok)
			}
		})
	}
}

func TestSourceIPs(t *testing.T) {
	got, err := sourceIPs("3")
	if err != nil || len(got) != 3 || !got[2].Equal(net.ParseIP("127.0.0.3")) {
		t.Errorf(`sourceIPs("3") = %v, %v`, got, err)
	}
	if got, err := sourceIPs(""); err != nil || got != nil {
		t.Errorf(`sourceIPs("") = %v, %v`, got, err)
	}
	if got, err := sourceIPs("127.0.0.5, 127.0.0.6"); err != nil || len(got) != 2 {
		t.Errorf("sourceIPs(list) = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "300", "127.0.0.x"} {
		if _, err := sourceIPs(bad); err == nil {
			t.Errorf("sourceIPs(%q): no error", bad)
		}
	}
}
