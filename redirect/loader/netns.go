package loader

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Netns is an open handle on a pod's network namespace.
type Netns struct {
	// File is the namespace (an nsfs file); the owner closes it.
	File *os.File
	// Cookie is the kernel's netns cookie: stable for the namespace's
	// lifetime, never reused, what bpf_get_netns_cookie returns.
	Cookie uint64
}

// Close closes the namespace handle.
func (n Netns) Close() error {
	if n.File == nil {
		return nil
	}
	return n.File.Close()
}

// OpenNetns opens the network namespace at path (/proc/PID/ns/net,
// /var/run/netns/NAME, a CNI netns path) and reads its cookie.
func OpenNetns(path string) (Netns, error) {
	f, err := os.Open(path)
	if err != nil {
		return Netns{}, fmt.Errorf("loader: netns: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		f.Close()
		return Netns{}, fmt.Errorf("loader: netns: %s is not a namespace file", path)
	}
	c, err := NetnsCookie(f)
	if err != nil {
		f.Close()
		return Netns{}, err
	}
	return Netns{File: f, Cookie: c}, nil
}

// NetnsCookie returns the cookie of the network namespace ns, read with
// SO_NETNS_COOKIE on a socket opened inside it (needs CAP_SYS_ADMIN for
// setns).
func NetnsCookie(ns *os.File) (uint64, error) {
	fd, err := SocketIn(ns, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return SocketNetnsCookie(fd)
}

// SocketNetnsCookie returns the netns cookie of the namespace a socket lives in.
func SocketNetnsCookie(fd int) (uint64, error) {
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("loader: SO_NETNS_COOKIE: %w", err)
	}
	return v, nil
}

// SocketIn creates a socket inside the network namespace ns: it switches a
// locked OS thread into ns and back.
func SocketIn(ns *os.File, domain, typ, proto int) (int, error) {
	fd := -1
	err := InNetns(ns, func() error {
		var err error
		fd, err = unix.Socket(domain, typ, proto)
		return err
	})
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// InNetns runs fn on an OS thread switched into the network namespace ns.
// Sockets fn creates live in ns; nothing else of the process moves.
func InNetns(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("loader: netns: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("loader: setns into pod netns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it when this
			// goroutine exits, so no goroutine runs in the wrong netns.
			errc <- fmt.Errorf("loader: setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
