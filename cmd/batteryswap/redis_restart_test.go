package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"batteryswap/sseclient"
	"batteryswap/store/storetest"
)

// privateRedis is a redis-server of this test's own, on a fixed free port,
// that the test can kill and start again.
type privateRedis struct {
	bin, port, dir string
	cmd            *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REQUIRE_SERVICES") == "1" {
			t.Fatal("redis-server is not installed and REQUIRE_SERVICES=1")
		}
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	r := &privateRedis{bin: bin, port: port, dir: t.TempDir()}
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *privateRedis) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

func (r *privateRedis) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command(r.bin, "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + r.port})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond) // waiting for another process to listen
	}
}

func (r *privateRedis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// TestRedisRestartLosesNothing: two instances on one PostgreSQL and a Redis
// that is killed and restarted. Changes committed while Redis is down reach
// a subscriber that stayed connected to the other instance, and one that
// resumes with its cursor, exactly once and in order; live delivery goes on.
func TestRedisRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	rd := startPrivateRedis(t)
	db := storetest.URL(t, "postgres")
	a := startInstance(t, testConfig(t, db, rd.url()))
	b := startInstance(t, testConfig(t, db, rd.url()))
	w := setup(t, a, a.app.store)
	stay := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{})
	next(t, stay)
	cursor := next(t, stay).ID

	rd.kill()
	charges := []int{40, 90, 30, 85}
	for _, c := range charges {
		if code := call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil); code != 200 {
			t.Fatalf("telemetry while Redis is down: %d", code)
		}
	}
	rd.start(t)

	for i := range charges {
		if e := next(t, stay); e.ID != cursor+int64(i)+1 || e.Type != "inventory_update" {
			t.Fatalf("after the restart the connected subscriber got %+v, want id %d", e, cursor+int64(i)+1)
		}
	}
	resumed := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{LastEventID: strconv.FormatInt(cursor, 10)})
	for i := range charges {
		if e := next(t, resumed); e.ID != cursor+int64(i)+1 {
			t.Fatalf("resumed subscriber got %+v, want id %d", e, cursor+int64(i)+1)
		}
	}
	call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": 20}, nil)
	want := cursor + int64(len(charges)) + 1
	for _, ch := range []<-chan ev{stay, resumed} {
		if e := next(t, ch); e.ID != want {
			t.Fatalf("live after the restart: %+v, want id %d", e, want)
		}
	}
}
