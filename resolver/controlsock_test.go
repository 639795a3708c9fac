package resolver

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nobody is an unprivileged uid other than ours, for the cases only root can set up.
const nobody = 65534

// TestControlSocketPlace shows where the daemon agrees to put its control socket: a directory
// it creates itself with mode 0750, or one only root and its own user can write to, all the way
// up; a stale socket is removed only if it is its own.
func TestControlSocketPlace(t *testing.T) {
	root := os.Geteuid() == 0
	mkdir := func(t *testing.T, path string, mode fs.FileMode) {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // Mkdir's mode is cut by the umask
			t.Fatal(err)
		}
	}
	chown := func(t *testing.T, path string, uid, gid int) {
		t.Helper()
		if err := os.Lchown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	// stale leaves a socket file behind the way a killed process does.
	stale := func(t *testing.T, path string) {
		t.Helper()
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close()
	}
	tests := []struct {
		name     string
		needRoot bool
		// setup prepares base and returns the socket's path and, for a failure, the path the
		// error must name ("" when it must succeed).
		setup   func(t *testing.T, base string) (socket, badPath string)
		wantErr string
	}{
		{name: "missing directory is created 0750", setup: func(t *testing.T, base string) (string, string) {
			return filepath.Join(base, "run", "fleetdns", "ctl.sock"), ""
		}},
		{name: "sticky world-writable directory", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "tmp"), 0o777|fs.ModeSticky)
			return filepath.Join(base, "tmp", "ctl.sock"), ""
		}},
		{name: "world-writable directory", wantErr: "writable by other users", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "ww"), 0o777)
			return filepath.Join(base, "ww", "ctl.sock"), filepath.Join(base, "ww")
		}},
		{name: "world-writable directory above", wantErr: "writable by other users", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "ww"), 0o777)
			mkdir(t, filepath.Join(base, "ww", "run"), 0o750)
			return filepath.Join(base, "ww", "run", "ctl.sock"), filepath.Join(base, "ww")
		}},
		{name: "group-writable directory of another group", needRoot: true, wantErr: "writable by other users", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "g"), 0o770)
			chown(t, filepath.Join(base, "g"), 0, nobody)
			return filepath.Join(base, "g", "ctl.sock"), filepath.Join(base, "g")
		}},
		{name: "directory of another user", needRoot: true, wantErr: "owned by uid 65534", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "o"), 0o755)
			chown(t, filepath.Join(base, "o"), nobody, nobody)
			return filepath.Join(base, "o", "ctl.sock"), filepath.Join(base, "o")
		}},
		{name: "link to a directory of another user", needRoot: true, wantErr: "owned by uid 65534", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "o"), 0o755)
			chown(t, filepath.Join(base, "o"), nobody, nobody)
			if err := os.Symlink(filepath.Join(base, "o"), filepath.Join(base, "run")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(base, "run", "ctl.sock"), filepath.Join(base, "o")
		}},
		{name: "stale socket of ours is replaced", setup: func(t *testing.T, base string) (string, string) {
			stale(t, filepath.Join(base, "ctl.sock"))
			return filepath.Join(base, "ctl.sock"), ""
		}},
		{name: "stale socket of another user is left", needRoot: true, wantErr: "a socket of uid 65534 is there", setup: func(t *testing.T, base string) (string, string) {
			stale(t, filepath.Join(base, "ctl.sock"))
			chown(t, filepath.Join(base, "ctl.sock"), nobody, nobody)
			return filepath.Join(base, "ctl.sock"), filepath.Join(base, "ctl.sock")
		}},
		{name: "not a socket", wantErr: "not a socket", setup: func(t *testing.T, base string) (string, string) {
			if err := os.WriteFile(filepath.Join(base, "ctl.sock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(base, "ctl.sock"), filepath.Join(base, "ctl.sock")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && !root {
				t.Skip("needs root to give a file to uid 65534")
			}
			base, err := os.MkdirTemp("", "fdns") // short: a socket path fits in 108 bytes
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			socket, badPath := tc.setup(t, base)
			before, _ := os.Lstat(socket)
			l, err := listenControl(socket)
			if tc.wantErr != "" {
				if err == nil {
					l.Close()
					t.Fatalf("listenControl(%s) = ok, want an error with %q naming %s", socket, tc.wantErr, badPath)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), badPath+":") {
					t.Errorf("listenControl(%s) = %v, want an error with %q naming %s", socket, err, tc.wantErr, badPath)
				}
				if after, _ := os.Lstat(socket); (before == nil) != (after == nil) || before != nil && !os.SameFile(before, after) {
					t.Errorf("listenControl(%s) failed and changed what was at the path: %v, was %v", socket, after, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("listenControl(%s) = %v, want ok", socket, err)
			}
			defer l.Close()
			if fi, err := os.Lstat(socket); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket %s: %v %v, want a socket with mode 0600", socket, fi.Mode(), err)
			}
			if tc.name == "missing directory is created 0750" {
				for _, dir := range []string{filepath.Dir(socket), filepath.Dir(filepath.Dir(socket))} {
					if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
						t.Errorf("created directory %s: mode %v (%v), want 0750", dir, fi.Mode().Perm(), err)
					}
				}
			}
			c, err := net.Dial("unix", socket)
			if err != nil {
				t.Fatalf("dial the new socket: %v", err)
			}
			c.Close()
		})
	}
}
