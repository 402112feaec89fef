package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// NetnsFinder finds the network namespaces of running pods, for pods the
// agent did not see created (started before it, or before their namespace
// was enrolled).
type NetnsFinder interface {
	// Scan returns netns paths by pod uid.
	Scan() (map[string]string, error)
}

// ProcFinder finds pods' namespaces through /proc: a process whose cgroup
// path names the pod (kubelet's "pod<uid>" with the cgroupfs driver,
// "pod<uid_with_underscores>" with systemd) lives in the pod's network
// namespace, /proc/<pid>/ns/net.
type ProcFinder struct {
	// Root is the proc filesystem. Default /proc.
	Root string
}

var podUIDRe = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)

// PodUIDFromCgroup returns the pod uid a /proc/<pid>/cgroup file names, or "".
func PodUIDFromCgroup(b []byte) string {
	m := podUIDRe.FindSubmatch(b)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(string(m[1]), "_", "-")
}

// Scan implements NetnsFinder. The lowest pid of a pod wins (its sandbox's
// pause process, in practice).
func (f ProcFinder) Scan() (map[string]string, error) {
	root := f.Root
	if root == "" {
		root = "/proc"
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	best := map[string]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "cgroup"))
		if err != nil {
			continue // raced with exit
		}
		uid := PodUIDFromCgroup(b)
		if uid == "" {
			continue
		}
		if cur, ok := best[uid]; !ok || pid < cur {
			best[uid] = pid
		}
	}
	out := make(map[string]string, len(best))
	for uid, pid := range best {
		out[uid] = filepath.Join(root, strconv.Itoa(pid), "ns", "net")
	}
	return out, nil
}
