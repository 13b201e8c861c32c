package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	for addr, want := range map[string]string{
		"":               "http://127.0.0.1:8080/readyz",
		":8080":          "http://127.0.0.1:8080/readyz",
		":9000":          "http://127.0.0.1:9000/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"[::]:8082":      "http://127.0.0.1:8082/readyz",
		"10.1.2.3:8083":  "http://10.1.2.3:8083/readyz",
		"localhost:8084": "http://localhost:8084/readyz",
		"[::1]:8085":     "http://[::1]:8085/readyz",
	} {
		if got := target(addr); got != want {
			t.Errorf("target(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"broker"}}`))
	}))
	defer srv.Close()

	if err := check(srv.URL+"/readyz", time.Second); err != nil {
		t.Fatalf("ready server: %v", err)
	}
	status = http.StatusServiceUnavailable
	err := check(srv.URL+"/readyz", time.Second)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "broker") {
		t.Fatalf("unready server: err = %v, want the 503 and its body", err)
	}
	srv.Close()
	if err := check(srv.URL+"/readyz", time.Second); err == nil {
		t.Fatal("closed server: want an error")
	}
}
