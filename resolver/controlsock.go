package resolver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The control socket takes commands that flush the cache and reload the config, and ctl trusts
// what it answers; so nobody but root and the service user may be able to put a socket at its
// path. These checks hold that for the directory it lives in and every directory above it:
// whoever can write to one of them can rename it away and put their own in its place.

// listenControl prepares the socket's directory, clears a stale socket of our own, and listens
// on path with mode 0600.
func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		// /run/fleetdns may not exist on a host without the systemd unit's RuntimeDirectory.
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
	}
	if err := checkDirs(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if uid, _ := owner(fi); uid != uint32(os.Geteuid()) {
			return nil, fmt.Errorf("control socket %s: a socket of uid %d is there, not of this process's user (uid %d); not removed", path, uid, os.Geteuid())
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("control socket %s: in use by another process", path)
		}
		os.Remove(path) // left by a process that did not stop cleanly
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Until this chmod the socket has the umask's mode (0755 with the usual 022): connecting
	// needs write permission, so only our user can connect in the meantime either.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// checkDirs fails unless dir and each directory above it (symbolic links resolved) belong to
// root or to this process's user and, unless sticky (/tmp), are writable by no one else.
func checkDirs(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	euid, egid := uint32(os.Geteuid()), uint32(os.Getegid())
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("control socket directory: %w", err)
		}
		uid, gid := owner(fi)
		if !fi.IsDir() {
			return fmt.Errorf("control socket directory %s: not a directory", p)
		}
		if uid != 0 && uid != euid {
			return fmt.Errorf("control socket directory %s: owned by uid %d, neither root nor this process's user (uid %d), who could replace the socket", p, uid, euid)
		}
		perm := fi.Mode().Perm()
		others := perm&0o002 != 0 || perm&0o020 != 0 && gid != 0 && gid != egid
		if others && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("control socket directory %s: writable by other users (mode %04o) without the sticky bit: anyone could replace the socket", p, perm)
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// owner is the file's user and group.
func owner(fi fs.FileInfo) (uid, gid uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}
