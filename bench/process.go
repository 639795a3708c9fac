package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Process is a started system under test: the command (run as `taskset -c CPU binary ...`, so
// the PID is the system's own once taskset has exec'd it) and the log its output goes to.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  string // path of the file that gets its stdout and stderr

	done    chan struct{} // closed once Wait has returned
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// stopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 5 * time.Second

// startProcess runs bin with args pinned to cpu, its output appended to logPath. Pdeathsig makes
// the kernel kill it if the harness dies first, so no system outlives a crashed test; the
// processes it forks do not inherit that, which is why Stop also kills descendants.
func startProcess(name, logPath string, env []string, cpu int, bin string, args ...string) (*Process, error) {
	return StartProcess(name, logPath, env, cpu, "", bin, args...)
}

// StartProcess is startProcess in the network namespace netns ("" for the harness's own), as
// `taskset -c CPU ip netns exec NETNS bin args...`: taskset and ip both exec the next program,
// so the PID is still the system's own.
func StartProcess(name, logPath string, env []string, cpu int, netns, bin string, args ...string) (*Process, error) {
	taskset, err := lookBinary("taskset")
	if err != nil {
		return nil, errors.New("taskset is not installed (Debian package util-linux)")
	}
	if cpu < 0 {
		return nil, fmt.Errorf("%s: cpu %d is not a CPU number", name, cpu)
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy
	argv := []string{"-c", strconv.Itoa(cpu)}
	if netns != "" {
		ip, err := lookBinary("ip")
		if err != nil {
			return nil, errors.New("ip is not installed (Debian package iproute2)")
		}
		argv = append(argv, ip, "netns", "exec", netns)
	}
	cmd := exec.Command(taskset, append(append(argv, bin), args...)...)
	cmd.Dir = filepath.Dir(logPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process ID of the system (its main process).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Log is the path of the file with the system's output.
func (p *Process) Log() string { return p.log }

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// CPUTime is the user plus system CPU time the system has used so far: all threads of its
// process and of every descendant still alive, plus the children they have already reaped
// (cutime and cstime), so a server that forks a child per TCP connection (dnsmasq) is counted
// whole. /proc counts in clock ticks of 1/CLK_TCK s; CLK_TCK is read once from getconf and is
// 100 on every Linux we run on, so the resolution is 10 ms: measure runs of seconds.
func (p *Process) CPUTime() (time.Duration, error) {
	if p.exited() {
		return 0, fmt.Errorf("%s (pid %d) has exited: %v", p.name, p.PID(), p.waitErr)
	}
	tree, err := processTree(p.PID())
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, s := range tree {
		ticks += s.utime + s.stime + s.cutime + s.cstime
	}
	hz := clockTicks()
	return time.Duration(ticks/hz)*time.Second + time.Duration(ticks%hz)*time.Second/time.Duration(hz), nil
}

// RSS is the resident memory of the system and its descendants, in bytes (the sum of VmRSS,
// which counts shared pages, such as kresd's memory-mapped cache, in every process mapping them).
func (p *Process) RSS() (int64, error) {
	if p.exited() {
		return 0, fmt.Errorf("%s (pid %d) has exited: %v", p.name, p.PID(), p.waitErr)
	}
	tree, err := processTree(p.PID())
	if err != nil {
		return 0, err
	}
	var total int64
	for i, s := range tree {
		kb, err := vmRSS(s.pid)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a descendant that ended meanwhile
		}
		total += kb * 1024
	}
	return total, nil
}

// Stop ends the system: SIGTERM to its PID, SIGKILL if it is still there after 5 s, then
// SIGKILL to each descendant it left behind (checked by PID and start time, so a reused PID is
// never hit). It returns an error if the system had already exited on its own, which means the
// run it served is suspect, or if it needed SIGKILL. Calling it again returns the same result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

// Kill ends the system and every descendant at once with SIGKILL, as a crash would (the chaos
// lab's killed upstream), and waits for the system to exit. Later calls to Stop return nil.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		if p.exited() {
			return
		}
		// The system first, then the descendants found before: a parent that restarts its
		// children (NSD's main process) is gone before it could replace one killed first.
		left, _ := processTree(p.PID())
		_ = p.cmd.Process.Kill()
		p.killLeft(left)
		<-p.done
	})
}

// killLeft sends SIGKILL to each process of tree other than the system itself that still runs,
// checked by PID and start time so a reused PID is never hit.
func (p *Process) killLeft(tree []procStat) {
	for _, s := range tree {
		if s.pid == p.PID() {
			continue
		}
		if now, serr := readStat(s.pid); serr == nil && now.start == s.start && now.state != 'Z' {
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
		}
	}
}

// Exited reports whether the system has exited (and been reaped).
func (p *Process) Exited() bool { return p.exited() }

func (p *Process) stop() error {
	if p.exited() {
		return fmt.Errorf("%s (pid %d) exited before Stop: %v%s", p.name, p.PID(), p.waitErr, p.logTail())
	}
	// Descendants first: once the parent is gone they are reparented and no longer findable.
	left, _ := processTree(p.PID())
	var err error
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		err = fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.name, p.PID(), stopTimeout)
	}
	p.killLeft(left)
	return err
}

// logTail is the end of the system's log, for error messages.
func (p *Process) logTail() string {
	const max = 4096
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	if len(b) == max {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "\n(" + p.log + " is empty)"
	}
	return "\n--- end of " + p.log + ":\n" + strings.TrimRight(string(b), "\n")
}

// waitReady polls the system until it answers name over UDP and then over TCP with a response
// (QR set) whose code is NOERROR or NXDOMAIN, which a forwarder can only give once it is
// listening and reaching the upstream.
func (p *Process) waitReady(addr netip.AddrPort, name string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var last error
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 500 * time.Millisecond}
		for {
			if p.exited() {
				return fmt.Errorf("%s exited while starting: %v%s", p.name, p.waitErr, p.logTail())
			}
			r, _, err := c.ExchangeContext(ctx, m, addr.String())
			switch {
			case err != nil:
				last = err
			case !r.Response || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError):
				last = fmt.Errorf("answer %s, want NOERROR or NXDOMAIN", dns.RcodeToString[r.Rcode])
			default:
				last = nil
			}
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not answer %s over %s on %s within %s: %v%s",
					p.name, name, network, addr, limit, last, p.logTail())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// procStat is what we read from /proc/PID/stat.
type procStat struct {
	pid, ppid                    int
	state                        byte
	utime, stime, cutime, cstime uint64 // clock ticks
	start                        uint64 // start time after boot, clock ticks: tells a reused PID apart
}

// readStat parses /proc/PID/stat. The command name (field 2) may hold spaces and parentheses,
// so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields, want at least 22", pid, len(f)+2)
	}
	s := procStat{pid: pid, state: f[0][0]}
	s.ppid, err = strconv.Atoi(f[1])
	for _, v := range []struct {
		dst   *uint64
		field int
	}{{&s.utime, 14}, {&s.stime, 15}, {&s.cutime, 16}, {&s.cstime, 17}, {&s.start, 22}} {
		if err != nil {
			break
		}
		*v.dst, err = strconv.ParseUint(f[v.field-3], 10, 64)
	}
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// processTree returns the stat of root followed by those of all its live descendants, found by
// walking the parent links of every process in /proc.
func processTree(root int) ([]procStat, error) {
	self, err := readStat(root)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		s, err := readStat(pid)
		if err != nil {
			continue // ended meanwhile
		}
		children[s.ppid] = append(children[s.ppid], s)
	}
	tree := []procStat{self}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree, nil
}

// vmRSS reads VmRSS from /proc/PID/status, in kB; a zombie has none and counts 0.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, nil
}

var clockTicks = sync.OnceValue(func() uint64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64); err == nil && hz > 0 {
			return hz
		}
	}
	return 100 // USER_HZ, fixed by the kernel ABI on x86 and arm
})

// lookBinary finds a program on PATH or in the sbin directories, which a user's PATH (or go
// test's) may lack.
func lookBinary(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		c := filepath.Join(dir, name)
		if fi, serr := os.Stat(c); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", err
}

// ContextSwitches counts the times any thread of the system or its descendants was switched
// out (voluntary and not): measured over an idle period, it is how often the system wakes up
// with nothing to do.
func (p *Process) ContextSwitches() (int64, error) {
	tree, err := processTree(p.PID())
	if err != nil {
		return 0, err
	}
	var total int64
	for _, s := range tree {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", s.pid))
		if err != nil {
			continue // ended meanwhile
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", s.pid, t.Name()))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					total += n
				}
			}
		}
	}
	return total, nil
}
