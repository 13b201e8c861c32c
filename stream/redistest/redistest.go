// Package redistest starts a redis-server of a test's own, on a free
// loopback port, that the test can kill and start again on the same port: a
// Redis outage. Tests that only need a Redis use TEST_REDIS_URL.
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one private redis-server.
type Server struct {
	bin, port string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Start starts a server, killed when the test ends. Without redis-server
// installed it skips the test, or fails it under REQUIRE_SERVICES=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REQUIRE_SERVICES") == "1" {
			t.Fatal("redis-server is not installed and REQUIRE_SERVICES=1")
		}
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	s := &Server{bin: bin, port: port}
	s.Restart(t)
	t.Cleanup(func() { s.Kill(t) })
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + s.port }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Restart starts the server (again, after Kill) on its port and returns
// once it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "--port", s.port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(s.cmd)
	s.exited = exited
	client := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Another process's listening socket cannot be waited on; ask again.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for client.Ping(ctx).Err() != nil {
		select {
		case <-exited:
			t.Fatal("redis-server exited at start")
		case <-ctx.Done():
			t.Fatal("redis-server did not answer within 10 s")
		case <-tick.C:
		}
	}
}

// Kill kills the server and waits until it has exited; a server that has
// exited already is left as it is.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.exited
}
