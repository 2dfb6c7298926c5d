// Package imagetest checks an image is what the operator's image must be, for the image's own
// tests and the end-to-end test that runs it.
package imagetest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/mastodon-operator/mastodon-operator/internal/image"
)

// Files lists the files of an image's flattened file system by path, with their headers.
func Files(t testing.TB, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Clean("/"+h.Name)] = h
	}
}

// CheckOperatorImage fails t unless img is what the operator's image must be: non-root, the
// manager as entrypoint, the OCI labels, no shell nor anything else to run.
func CheckOperatorImage(t testing.TB, img v1.Image, o image.Options) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.Config.User)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/manager" {
		t.Errorf("entrypoint %q, want [/manager]", cfg.Config.Entrypoint)
	}
	if cfg.OS != "linux" || cfg.Architecture != o.Arch {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, o.Arch)
	}
	for key, want := range o.Labels() {
		if got := cfg.Config.Labels[key]; got != want || want == "" {
			t.Errorf("label %s = %q, want %q", key, got, want)
		}
	}
	files := Files(t, img)
	for path, h := range files {
		if h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0 && path != "/manager" {
			t.Errorf("%s is executable: the image must run the manager alone", path)
		}
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
			t.Errorf("%s is a link", path)
		}
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh"} {
		if files[shell] != nil {
			t.Errorf("the image holds %s", shell)
		}
	}
	if h := files["/manager"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("/manager is missing or not executable: %+v", h)
	}
	if h := files["/tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp is missing or not world-writable with the sticky bit: %+v", h)
	}
	if files["/etc/ssl/certs/ca-certificates.crt"] == nil {
		t.Error("no CA certificates: the manager could not reach chart repositories over HTTPS")
	}
}

// Unpack writes img's flattened file system into dir, owners and modes included (as root), for
// an OCI runtime to run it from.
func Unpack(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: the operator's image holds only files and directories, not type %c", h.Name, h.Typeflag)
		}
		// Chmod after creating: the umask would drop the sticky and group bits.
		if err := os.Chmod(path, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
			return err
		}
		if err := os.Lchown(path, h.Uid, h.Gid); err != nil {
			return err
		}
	}
}

func modeBits(mode int64) os.FileMode {
	var m os.FileMode
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
