package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images are built without docker or a registry: files (usually static
// CGO_ENABLED=0 Go binaries) go into one tar layer on an empty base, the
// config names the entrypoint, and the result is written as a tarball that
// `ctr images import` loads into each node's containerd under its tag. Pods
// use such images with imagePullPolicy IfNotPresent or Never.

// File is one file of an image: exactly one of Data, HostPath, Symlink or
// Dir.
type File struct {
	Data     []byte
	HostPath string // copied from the host
	Symlink  string // target of a symbolic link
	Dir      bool   // an (empty) directory, e.g. /tmp with Mode 01777
	// Mode is the permission bits (plus sticky/setuid bits); default 0755
	// for HostPath, for Data whose path is under a bin directory and for
	// Dir, else 0644.
	Mode fs.FileMode
}

// Image describes an image to build.
type Image struct {
	// Ref is the image's name and tag, e.g. "warren.local/echo:dev".
	Ref string
	// ExtraRefs are more names for the same image, written into the same
	// tarball (`ctr images import` creates every one of them).
	ExtraRefs []string
	// Files maps absolute paths in the image to their content. Parent
	// directories are added (0755).
	Files      map[string]File
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// User is the config's user, e.g. "65532"; default root.
	User string
}

// BuildImage writes img as an image tarball (the `docker save` layout that
// `ctr images import` reads, tagged img.Ref) to out.
func BuildImage(img Image, out string) error {
	refs := map[name.Reference]v1.Image{}
	var tags []name.Tag
	for _, r := range append([]string{img.Ref}, img.ExtraRefs...) {
		tag, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
		}
		tags = append(tags, tag)
	}
	layerTar, err := tarFiles(img.Files)
	if err != nil {
		return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("cluster: image %s: layer: %w", img.Ref, err)
	}
	base, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	env := img.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	cf.Config = v1.Config{
		Entrypoint: img.Entrypoint,
		Cmd:        img.Cmd,
		Env:        env,
		WorkingDir: img.WorkingDir,
		User:       img.User,
	}
	im, err := mutate.ConfigFile(base, cf)
	if err != nil {
		return fmt.Errorf("cluster: image %s: config: %w", img.Ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
	}
	for _, tag := range tags {
		refs[tag] = im
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cluster: image %s: write %s: %w", img.Ref, out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("cluster: image %s: %w", img.Ref, err)
	}
	return nil
}

// tarFiles builds one deterministic layer: sorted paths, zero times, root owner.
func tarFiles(files map[string]File) ([]byte, error) {
	dirs := map[string]bool{}
	var paths []string
	for p := range files {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return nil, fmt.Errorf("file path %q: want a clean absolute path", p)
		}
		paths = append(paths, p)
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, p := range paths {
		delete(dirs, p)
	}
	var all []string
	for d := range dirs {
		all = append(all, d)
	}
	all = append(all, paths...)
	sort.Strings(all)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, p := range all {
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), ModTime: epoch, Format: tar.FormatPAX}
		f, isFile := files[p]
		var data []byte
		switch {
		case !isFile:
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
		case f.Dir:
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
			if f.Mode != 0 {
				hdr.Mode = tarMode(f.Mode)
			}
		case f.Symlink != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Symlink, 0o777
		default:
			data = f.Data
			if f.HostPath != "" {
				b, err := os.ReadFile(f.HostPath)
				if err != nil {
					return nil, err
				}
				data = b
			}
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
				if f.HostPath != "" || strings.Contains(p, "/bin/") {
					mode = 0o755
				}
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, tarMode(mode), int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarMode converts permission and sticky/setuid/setgid bits to tar's mode.
func tarMode(m fs.FileMode) int64 {
	t := int64(m.Perm())
	if m&fs.ModeSticky != 0 {
		t |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		t |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		t |= 0o4000
	}
	return t
}

// GoBuild builds the main package pkg (an import path or ./relative to
// repoDir) as a static linux binary at out: CGO_ENABLED=0, -trimpath, -s -w.
func GoBuild(ctx context.Context, repoDir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = repoDir
	goflags := os.Getenv("GOFLAGS")
	if !strings.Contains(goflags, "-buildvcs") {
		goflags = strings.TrimSpace(goflags + " -buildvcs=false")
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOTOOLCHAIN=local", "GOFLAGS="+goflags)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cluster: go build %s: %w: %s", pkg, err, bytes.TrimSpace(b))
	}
	return nil
}

// GoImage describes an image made of Go main packages.
type GoImage struct {
	Ref string
	// Binaries maps a path in the image to a main package, e.g.
	// "/usr/local/bin/echo": "./e2e/cluster/images/echo".
	Binaries map[string]string
	// Files are added as they are (certificates, configs...).
	Files map[string]File
	// Busybox adds Debian's static busybox as /bin/busybox with /bin/sh and
	// common applets linked to it, for `kubectl exec ... sh`.
	Busybox    bool
	Entrypoint []string
	Cmd        []string
	Env        []string
}

// busyboxPath is where Debian's busybox-static installs.
const busyboxPath = "/bin/busybox"

var busyboxApplets = []string{"sh", "ls", "cat", "echo", "ps", "sleep", "env", "nc", "ip", "ifconfig", "netstat", "hostname", "id", "mount", "df", "top", "grep", "vi"}

// BuildGoImage compiles the binaries of gi (in repoDir, with scratch space
// under workDir) and writes the image tarball to out.
func BuildGoImage(ctx context.Context, repoDir, workDir string, gi GoImage, out string) error {
	img := Image{Ref: gi.Ref, Files: map[string]File{}, Entrypoint: gi.Entrypoint, Cmd: gi.Cmd, Env: gi.Env}
	for p, f := range gi.Files {
		img.Files[p] = f
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("cluster: image %s: %w", gi.Ref, err)
	}
	paths := make([]string, 0, len(gi.Binaries))
	for p := range gi.Binaries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i, p := range paths {
		bin := filepath.Join(workDir, fmt.Sprintf("%s-%d", path.Base(p), i))
		if err := GoBuild(ctx, repoDir, gi.Binaries[p], bin); err != nil {
			return fmt.Errorf("cluster: image %s: %w", gi.Ref, err)
		}
		defer os.Remove(bin)
		img.Files[p] = File{HostPath: bin, Mode: 0o755}
	}
	if gi.Busybox {
		if err := addBusybox(img.Files); err != nil {
			return fmt.Errorf("cluster: image %s: %w", gi.Ref, err)
		}
	}
	return BuildImage(img, out)
}

// addBusybox adds Debian's static busybox as /bin/busybox with /bin/sh and
// the common applets linked to it.
func addBusybox(files map[string]File) error {
	if _, err := os.Stat(busyboxPath); err != nil {
		return fmt.Errorf("busybox: %w (hack/deps.sh cluster installs busybox-static)", err)
	}
	files["/bin/busybox"] = File{HostPath: busyboxPath, Mode: 0o755}
	for _, a := range busyboxApplets {
		if _, taken := files["/bin/"+a]; !taken {
			files["/bin/"+a] = File{Symlink: "busybox"}
		}
	}
	return nil
}

// builtinImages are the images every cluster gets: the sandbox (pause) image
// and the echo test application.
func builtinImages() []GoImage {
	return []GoImage{
		{
			Ref:        PauseImage,
			Binaries:   map[string]string{"/pause": "./e2e/cluster/images/pause"},
			Entrypoint: []string{"/pause"},
		},
		{
			Ref:        EchoImage,
			Binaries:   map[string]string{"/usr/local/bin/echo-server": "./e2e/cluster/images/echo"},
			Busybox:    true,
			Entrypoint: []string{"/usr/local/bin/echo-server"},
		},
	}
}

// imageFile is the tarball name of ref under the image dir.
func imageFile(ref string) string {
	r := strings.NewReplacer("/", "_", ":", "_", "@", "_")
	return r.Replace(ref) + ".tar"
}

// importImage loads an image tarball into one node's containerd (namespace
// k8s.io, where the CRI plugin looks).
func importImage(ctx context.Context, n node, tarPath string) error {
	if _, err := run(ctx, "ctr", "-a", n.containerdSock(), "-n", "k8s.io", "images", "import", tarPath); err != nil {
		return fmt.Errorf("node %s: import %s: %w", n.Name, filepath.Base(tarPath), err)
	}
	return nil
}
