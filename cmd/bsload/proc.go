package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// parseVmRSS reads the VmRSS line of /proc/PID/status, in KiB.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", bytes.TrimSpace(line))
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, errors.New("no VmRSS line (kernel thread or exited process?)")
}

// parseStatTicks reads utime and stime (fields 14 and 15) of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted after its last ')'.
func parseStatTicks(stat []byte) (utime, stime int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat: no ')'")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed stat: %d fields after the name", len(f))
	}
	if utime, err = strconv.ParseInt(string(f[11]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseInt(string(f[12]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

// procRSS returns the resident set size of pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	kb, err := parseVmRSS(b)
	return kb << 10, err
}

// procCPU returns the CPU time (user + system) pid has used, in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	u, s, err := parseStatTicks(b)
	return float64(u+s) / clockTicks, err
}

// parseCPULine reads the aggregate "cpu" line of /proc/stat: all jiffies
// but steal, the idle ones (idle + iowait), and steal.
func parseCPULine(stat []byte) (total, idle, steal int64, err error) {
	for line := range bytes.Lines(stat) {
		f := bytes.Fields(line)
		if len(f) < 5 || string(f[0]) != "cpu" {
			continue
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
			}
			if i == 7 { // steal: time the hypervisor gave to others, not ours
				steal = n
				continue
			}
			if i >= 8 { // guest time is already counted in user
				break
			}
			total += n
			if i == 3 || i == 4 {
				idle += n
			}
		}
		return total, idle, steal, nil
	}
	return 0, 0, 0, errors.New("no cpu line in /proc/stat")
}

// commOf returns the command name (field 2) of a /proc/PID/stat line.
func commOf(stat []byte) string {
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return ""
	}
	return string(stat[i+1 : j])
}

// machine is a whole-machine CPU sample, plus the CPU time of the processes
// named comm (e.g. every postgres process).
type machine struct {
	total, idle int64   // jiffies, from /proc/stat
	steal       int64   // jiffies the hypervisor ran someone else on our CPUs
	named       float64 // seconds, sum over processes named comm
	load        string  // /proc/loadavg
}

func sampleMachine(comm string) machine {
	var m machine
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		m.total, m.idle, m.steal, _ = parseCPULine(b)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := bytes.Fields(b); len(f) >= 3 {
			m.load = string(bytes.Join(f[:3], []byte(" ")))
		}
	}
	if comm == "" {
		return m
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil || commOf(b) != comm {
			continue
		}
		if u, s, err := parseStatTicks(b); err == nil {
			m.named += float64(u+s) / clockTicks
		}
	}
	return m
}

// stolen is how much of the CPUs the hypervisor gave to other machines
// between a and b, in cores: a noisy neighbour's share, which this machine's
// processes could not use.
func stolen(a, b machine, cpus int) float64 {
	st := b.steal - a.steal
	dt := b.total - a.total + st
	if dt <= 0 {
		return 0
	}
	return float64(cpus) * float64(st) / float64(dt)
}

// busy is the share of all CPUs that was not idle between a and b, in
// cores (2.0 = both cores of a 2-core machine busy).
func busy(a, b machine, cpus int) float64 {
	dt := b.total - a.total
	if dt <= 0 {
		return 0
	}
	return float64(cpus) * float64(dt-(b.idle-a.idle)) / float64(dt)
}

// parseCPUModel reads the first "model name" line of /proc/cpuinfo. The
// hosts behind one kind of machine differ in CPU, and the numbers with them
// (docs/BENCHMARKS.md), so every run names the CPU it ran on.
func parseCPUModel(cpuinfo []byte) (string, bool) {
	for line := range bytes.Lines(cpuinfo) {
		key, value, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.TrimSpace(key)) == "model name" {
			return string(bytes.TrimSpace(value)), true
		}
	}
	return "", false
}

// machineLine is the CPU model and the number of CPUs, for a run's header.
func machineLine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m, ok := parseCPUModel(b); ok {
			model = m
		}
	}
	return fmt.Sprintf("%s, %d CPUs", model, runtime.NumCPU())
}
