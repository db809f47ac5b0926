package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Measure is the cost of one tool run, from the kernel's accounting of the
// child (wait4 rusage): wall time from start to reap, CPU time in user and
// kernel mode, and peak resident set size.
type Measure struct {
	Wall   time.Duration
	User   time.Duration
	Sys    time.Duration
	MaxRSS int64 // bytes
}

// CPU is user plus system time.
func (m Measure) CPU() time.Duration { return m.User + m.Sys }

// GNUTime is GNU time, which forks the tool and reports its wait4 rusage.
// The bench cannot take the rusage itself: Go starts children with
// vfork (CLONE_VM), and the kernel carries the peak RSS of the address
// space a process execs from into its maxrss, so every tool would show at
// least the bench's own ~15 MB. GNU time forks from its own 1 MB address
// space, and its output has 10 ms CPU resolution.
const GNUTime = "/usr/bin/time"

// timeFormat asks GNU time for user and system seconds and peak RSS in KiB.
const timeFormat = "%U %S %M"

// run runs bin with args under GNU time through runIn (lab.Run, which
// forks straight into the vantage's namespace), with stdout and stderr
// going to files named after base, and waits for it. The child gets its
// own process group, GNU time dies with the bench (Pdeathsig) and the
// group is killed when ctx ends.
func run(ctx context.Context, runIn func(*exec.Cmd) error, base, bin string, args ...string) (Measure, error) {
	stdout, stderr, timeFile := base+".out", base+".err", base+".time"
	out, err := os.Create(stdout)
	if err != nil {
		return Measure{}, fmt.Errorf("create %s: %w", stdout, err)
	}
	defer out.Close()
	errf, err := os.Create(stderr)
	if err != nil {
		return Measure{}, fmt.Errorf("create %s: %w", stderr, err)
	}
	defer errf.Close()
	cmd := exec.CommandContext(ctx, GNUTime, append([]string{"-f", timeFormat, "-o", timeFile, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	werr := runIn(cmd)
	m := Measure{Wall: time.Since(t0)}
	if cmd.ProcessState == nil {
		return m, werr // never started
	}
	if ctx.Err() != nil {
		return m, fmt.Errorf("%s: %w", filepath.Base(bin), ctx.Err())
	}
	tb, err := os.ReadFile(timeFile)
	if err != nil {
		return m, fmt.Errorf("read GNU time output: %w", err)
	}
	u, s, rss, err := ParseGNUTime(tb)
	if err != nil {
		return m, err
	}
	m.User, m.Sys, m.MaxRSS = u, s, rss
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return m, &exitError{code: ee.ExitCode(), stderr: tail(stderr)}
	}
	if werr != nil {
		return m, fmt.Errorf("wait: %w", werr)
	}
	return m, nil
}

// ParseGNUTime reads the last line of GNU time's output in timeFormat
// (earlier lines say "Command exited with non-zero status N" and the
// like): user and system CPU time and peak RSS (bytes).
func ParseGNUTime(b []byte) (user, sys time.Duration, maxRSS int64, err error) {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(ls[len(ls)-1])
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("GNU time output: last line %q, want \"user sys maxrss\"", ls[len(ls)-1])
	}
	var ds [2]time.Duration
	for i, s := range f[:2] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 {
			return 0, 0, 0, fmt.Errorf("GNU time output: CPU seconds %q: not a non-negative number", s)
		}
		ds[i] = time.Duration(v * float64(time.Second))
	}
	kb, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || kb < 0 {
		return 0, 0, 0, fmt.Errorf("GNU time output: maxrss %q: not a non-negative integer", f[2])
	}
	return ds[0], ds[1], kb * 1024, nil
}

// exitError is a tool that exited non-zero; some tools (fping) use exit
// codes for findings, so callers decide.
type exitError struct {
	code   int
	stderr string
}

func (e *exitError) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.code, e.stderr)
}

// exitCode returns the exit code of a run error, or -1 if it is not one.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return -1
}

// tail returns the last lines of a file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > 3 {
		ls = ls[len(ls)-3:]
	}
	return strings.Join(ls, " | ")
}

// Machine describes the host the figures come from.
type Machine struct {
	CPU    string
	Cores  int
	Kernel string
	Load   string // 1, 5, 15 minute load averages at the start
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, load average %s", m.CPU, m.Cores, m.Kernel, m.Load)
}

// ReadMachine reads /proc for the CPU model, kernel release and load.
func ReadMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), CPU: "unknown CPU", Kernel: "unknown", Load: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	return m
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, which
// the kernel fixes at 100 in its user-space ABI.
const userHZ = 100

// procCPU returns a process's user+system CPU time so far, all threads.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU extracts utime+stime (fields 14 and 15) from a
// /proc/<pid>/stat line; the command name in parentheses may contain
// spaces, so fields are counted after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: cpu field %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
