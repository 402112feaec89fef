package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is one long-running process of the cluster. It is started detached
// (own session, output appended to LogFile) so it outlives the process that
// ran Up; its pid is recorded in PIDFile for Down and Status.
type daemon struct {
	Name  string // e.g. "kube-apiserver" or "wk-node1/kubelet"
	Bin   string
	Args  []string
	Netns string // netns file to enter (nsenter --net) or ""
	// CgroupProcs is a cgroup.procs file the process moves itself into before
	// it execs, so everything it forks (containerd's shims) is found there.
	CgroupProcs string
	LogFile     string
	PIDFile     string
	Env         []string
}

// start launches d and returns its pid. The process is wrapped in /bin/sh only
// to join the cgroup first; sh execs nsenter, which execs the binary, so the
// pid stays the binary's.
func (d daemon) start() (int, error) {
	if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(d.PIDFile), 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	argv := append([]string{d.Bin}, d.Args...)
	if d.Netns != "" {
		argv = append([]string{"nsenter", "--net=" + d.Netns, "--"}, argv...)
	}
	if d.CgroupProcs != "" {
		argv = append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, d.CgroupProcs}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(logf, "==== %s localkube: starting %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: start: %w", d.Name, err)
	}
	pid := cmd.Process.Pid
	go cmd.Wait() //nolint:errcheck // reap it if it dies while we run; its log says why
	if err := os.WriteFile(d.PIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, err
	}
	return pid, nil
}

// readPID returns the pid recorded in file, or 0.
func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// cmdline returns pid's argv joined by spaces.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// stopPID ends pid if its command line contains marker (so a recycled pid is
// never signalled): SIGTERM, then SIGKILL after grace.
func stopPID(pid int, marker string, grace time.Duration) error {
	if !alive(pid) || !strings.Contains(cmdline(pid), marker) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if waitGone([]int{pid}, grace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if !waitGone([]int{pid}, 5*time.Second) {
		return fmt.Errorf("pid %d survived SIGKILL", pid)
	}
	return nil
}

func waitGone(pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := false
		for _, p := range pids {
			if alive(p) {
				left = true
			}
		}
		if !left {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run executes a short command and returns its combined output, with the
// output in the error when it fails.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// inNetns runs a short command inside the network namespace file netns.
func inNetns(ctx context.Context, netns string, args ...string) (string, error) {
	return run(ctx, "nsenter", append([]string{"--net=" + netns, "--"}, args...)...)
}
