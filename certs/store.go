package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// dirStore persists a self-signed CA in a directory:
//
//	signer-key.pem    the signing key
//	signer-chain.pem  the signing certificate, intermediates, root last
//	bundle.pem        every root in the trust bundle
//	pending-key.pem, pending-chain.pem  a prepared next root (rotation)
//
// Files are written 0600 through a rename, so a crash leaves either the old
// or the new file, never half of one.
type dirStore struct{ dir string }

type storedState struct {
	signer, pending *Authority
	roots           []*x509.Certificate
}

func (s *dirStore) path(name string) string { return filepath.Join(s.dir, name) }

func (s *dirStore) load() (storedState, error) {
	var st storedState
	var err error
	if st.signer, err = s.loadAuthority("signer"); err != nil || st.signer == nil {
		return st, err
	}
	if st.pending, err = s.loadAuthority("pending"); err != nil {
		return st, err
	}
	b, err := os.ReadFile(s.path("bundle.pem"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, fmt.Errorf("certs: %w", err)
	default:
		if st.roots, err = ParseCertificates(b); err != nil {
			return st, fmt.Errorf("certs: %s: %w", s.path("bundle.pem"), err)
		}
	}
	return st, nil
}

func (s *dirStore) loadAuthority(name string) (*Authority, error) {
	keyPEM, err := os.ReadFile(s.path(name + "-key.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", s.path(name+"-key.pem"), err)
	}
	chainPEM, err := os.ReadFile(s.path(name + "-chain.pem"))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	chain, err := ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", s.path(name+"-chain.pem"), err)
	}
	a := &Authority{Cert: chain[0], Key: key, Root: chain[len(chain)-1]}
	if len(chain) > 2 {
		a.Intermediates = chain[1 : len(chain)-1]
	}
	return a, nil
}

func (s *dirStore) save(st storedState) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("certs: data dir: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("certs: data dir: %w", err)
	}
	if err := s.saveAuthority("signer", st.signer); err != nil {
		return err
	}
	if err := s.saveAuthority("pending", st.pending); err != nil {
		return err
	}
	return writeFileAtomic(s.path("bundle.pem"), EncodeCertificates(st.roots))
}

func (s *dirStore) saveAuthority(name string, a *Authority) error {
	if a == nil {
		for _, f := range []string{name + "-key.pem", name + "-chain.pem"} {
			if err := os.Remove(s.path(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("certs: %w", err)
			}
		}
		return nil
	}
	keyPEM, err := EncodeKey(a.Key)
	if err != nil {
		return err
	}
	chain := []*x509.Certificate{a.Cert}
	if !bytes.Equal(a.Cert.Raw, a.Root.Raw) {
		chain = append(append(chain, a.Intermediates...), a.Root)
	}
	if err := writeFileAtomic(s.path(name+"-key.pem"), keyPEM); err != nil {
		return err
	}
	return writeFileAtomic(s.path(name+"-chain.pem"), EncodeCertificates(chain))
}

// writeFileAtomic writes data to path with mode 0600 via a synced temp file
// and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
