package loader

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/warren-mesh/warren/redirect"
)

// Mount is one line of /proc/self/mountinfo, the fields capture cares about.
type Mount struct {
	Root   string // root of the mount within its filesystem
	Point  string // mount point
	FSType string // e.g. cgroup2, cgroup, bpf
	Super  string // super options, e.g. "rw,net_cls,net_prio"
}

// ParseMountinfo parses the mountinfo format of proc(5).
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(f) < sep+3 {
			return nil, fmt.Errorf("loader: malformed mountinfo line %q", sc.Text())
		}
		out = append(out, Mount{Root: unescapeMount(f[3]), Point: unescapeMount(f[4]), FSType: f[sep+1], Super: f[sep+3]})
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readMounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// FindCgroup2 returns the cgroup v2 mount point among mounts, wherever the
// layout puts it: /sys/fs/cgroup (unified), /sys/fs/cgroup/unified (hybrid)
// or elsewhere. A mount of the hierarchy's root wins over bind mounts of
// a subtree, one under /sys/fs/cgroup over others, then the shortest.
func FindCgroup2(mounts []Mount) (string, error) {
	best, bestScore := "", -1
	for _, m := range mounts {
		if m.FSType != "cgroup2" {
			continue
		}
		score := 0
		if m.Root == "/" {
			score += 2
		}
		if m.Point == "/sys/fs/cgroup" || strings.HasPrefix(m.Point, "/sys/fs/cgroup/") {
			score++
		}
		if score > bestScore || score == bestScore && len(m.Point) < len(best) {
			best, bestScore = m.Point, score
		}
	}
	if best == "" {
		return "", redirect.NotSupported("cgroup v2 (no cgroup2 filesystem mounted)", nil)
	}
	return best, nil
}

// CheckNetClsPrio returns ErrNotSupported when a cgroup v1 net_cls or
// net_prio hierarchy is mounted: sockets then stop carrying their cgroup v2
// membership and cgroup programs no longer see which pod opened them.
func CheckNetClsPrio(mounts []Mount) error {
	for _, m := range mounts {
		if m.FSType != "cgroup" {
			continue
		}
		for _, o := range strings.Split(m.Super, ",") {
			if o == "net_cls" || o == "net_prio" {
				return redirect.NotSupported(fmt.Sprintf("cgroup v1 %s hierarchy mounted at %s (it breaks socket to cgroup v2 matching)", o, m.Point), nil)
			}
		}
	}
	return nil
}

// Cgroup2Mount finds this machine's cgroup v2 mount point.
func Cgroup2Mount() (string, error) {
	mounts, err := readMounts()
	if err != nil {
		return "", err
	}
	return FindCgroup2(mounts)
}

// ResolveCgroup turns a cgroup path relative to the cgroup v2 mount
// ("kubepods", "/node1/kubepods") or absolute under it into an absolute
// directory that exists.
func ResolveCgroup(path string) (string, error) {
	root, err := Cgroup2Mount()
	if err != nil {
		return "", err
	}
	abs := path
	if !strings.HasPrefix(path, root+"/") && path != root {
		abs = filepath.Join(root, path)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("loader: cgroup %s: %w", abs, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("loader: cgroup %s is not a directory", abs)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(abs, &fs); err != nil {
		return "", fmt.Errorf("loader: cgroup %s: %w", abs, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", fmt.Errorf("loader: %s is not on a cgroup v2 filesystem", abs)
	}
	return abs, nil
}

// CgroupID returns the cgroup v2 id of a cgroup directory: what
// bpf_get_current_cgroup_id() returns for tasks in it.
func CgroupID(dir string) (uint64, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err == nil && len(h.Bytes()) == 8 {
		return binary.NativeEndian.Uint64(h.Bytes()), nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("loader: cgroup id of %s: %w", dir, err)
	}
	return st.Ino, nil
}

// CgroupOfPID returns the absolute cgroup v2 directory of a process.
func CgroupOfPID(pid int) (string, error) {
	root, err := Cgroup2Mount()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("loader: %w", err)
	}
	rel, err := ParseCgroupV2Path(b)
	if err != nil {
		return "", fmt.Errorf("loader: pid %d: %w", pid, err)
	}
	return filepath.Join(root, rel), nil
}

// ParseCgroupV2Path returns the cgroup v2 path ("0::/path" line) of a
// /proc/PID/cgroup file.
func ParseCgroupV2Path(b []byte) (string, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			return string(p), nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 membership")
}
