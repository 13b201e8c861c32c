package main

import (
	"os"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tbatteryswap\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 10000 kB\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 12345 {
		t.Errorf("parseVmRSS = %d, %v; want 12345", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: no error")
	}
	if _, err := parseVmRSS([]byte("VmRSS:\t12 MB\n")); err == nil {
		t.Error("parseVmRSS with an unknown unit: no error")
	}
}

func TestParseStatTicks(t *testing.T) {
	// The name may hold spaces and parentheses; fields count after the last ')'.
	stat := "4242 (bat (swap) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 731 219 0 0 20 0 12 0 100 1000000 3000 18446744073709551615\n"
	u, s, err := parseStatTicks([]byte(stat))
	if err != nil || u != 731 || s != 219 {
		t.Errorf("parseStatTicks = %d, %d, %v; want 731, 219", u, s, err)
	}
	if _, _, err := parseStatTicks([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if rss, err := procRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("procRSS(self) = %d, %v", rss, err)
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("procCPU(self): %v", err)
	}
}

func TestParseCPULine(t *testing.T) {
	stat := "cpu  100 5 50 800 20 1 2 30 7 0\ncpu0 50 2 25 400 10 0 1 15 0 0\nintr 1\n"
	total, idle, steal, err := parseCPULine([]byte(stat))
	// user+nice+system+idle+iowait+irq+softirq = 978; steal and guest left out.
	if err != nil || total != 978 || idle != 820 || steal != 30 {
		t.Errorf("parseCPULine = %d, %d, %d, %v; want 978, 820, 30", total, idle, steal, err)
	}
	// 250 of 1,000 jiffies went to other machines: a quarter of 2 cores.
	if a, b := (machine{total: 1000, steal: 100}), (machine{total: 1750, steal: 350}); stolen(a, b, 2) != 0.5 {
		t.Errorf("stolen = %v, want 0.5 cores", stolen(a, b, 2))
	}
	if a, b := (machine{total: 1000, idle: 500}), (machine{total: 2000, idle: 750}); busy(a, b, 2) != 1.5 {
		t.Errorf("busy = %v, want 1.5 cores", busy(a, b, 2))
	}
}

func TestCommOf(t *testing.T) {
	if got := commOf([]byte("12 (post gres) S 1")); got != "post gres" {
		t.Errorf("commOf = %q", got)
	}
	if got := commOf([]byte("garbage")); got != "" {
		t.Errorf("commOf(garbage) = %q", got)
	}
}

func TestParseCPUModel(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 2\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.122\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got, ok := parseCPUModel([]byte(cpuinfo)); !ok || got != "AMD EPYC" {
		t.Errorf("parseCPUModel = %q, %v; want \"AMD EPYC\"", got, ok)
	}
	// arm64 kernels have no "model name"; the "model" line must not match.
	if got, ok := parseCPUModel([]byte("processor\t: 0\nmodel\t\t: 2\n")); ok {
		t.Errorf("parseCPUModel without a model name = %q, true", got)
	}
}
