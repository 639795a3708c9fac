package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// defaultServiceUser is the user the packaged fleetdns runs as; ctl trusts its sockets when
// that user exists.
const defaultServiceUser = "fleetdns"

// trust is who may be at the other end of the control socket: root, the user running ctl and
// the service user. Anyone else who managed to put a socket at that path (a world-writable
// directory, a path fleetdns was not running on) could answer "ctl stats" with invented numbers
// or read what "ctl reload" was asked.
type trust struct {
	uids    map[uint32]bool
	service string // how the refusal names the service user
}

// newTrust trusts root, the effective user and the service user named by name (a user name or
// a numeric uid). A missing default user is no error: not every host has one.
func newTrust(name string, explicit bool) (trust, error) {
	t := trust{uids: map[uint32]bool{0: true, uint32(os.Geteuid()): true}}
	if name == "" {
		return t, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if byID, idErr := user.LookupId(name); idErr == nil {
			u, err = byID, nil
		}
	}
	if err != nil {
		if !explicit {
			return t, nil
		}
		if _, numErr := strconv.ParseUint(name, 10, 32); numErr != nil {
			return t, fmt.Errorf("service user %q: %w", name, err)
		}
		u = &user.User{Uid: name, Username: name} // a uid without a passwd entry is still a uid
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return t, fmt.Errorf("service user %q: uid %q: %w", name, u.Uid, err)
	}
	t.uids[uint32(uid)] = true
	t.service = fmt.Sprintf("the service user %s (uid %d)", u.Username, uid)
	return t, nil
}

func (t trust) whom() string {
	if t.service == "" {
		return fmt.Sprintf("root or you (uid %d)", os.Geteuid())
	}
	return fmt.Sprintf("root, you (uid %d) or %s", os.Geteuid(), t.service)
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// checkFile refuses a socket path that is not a socket or whose owner is not trusted; it
// catches the plain case with a clear message before anything is sent.
func (t trust) checkFile(socket string) error {
	fi, err := os.Lstat(socket)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the dial says so, in the words people know; the peer check still holds
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s is not a socket", socket)
	}
	uid := fi.Sys().(*syscall.Stat_t).Uid
	if !t.uids[uid] {
		return fmt.Errorf("refusing control socket %s: it belongs to %s, not to %s, so it may not be fleetdns answering (if fleetdns runs as that user, say so with -user)", socket, userName(uid), t.whom())
	}
	return nil
}

// checkPeer refuses a connection whose listening process does not run as a trusted user: the
// file check alone can be raced, the kernel's credentials of the peer cannot.
func (t trust) checkPeer(socket string, c net.Conn) error {
	uid, ok, err := peerUID(c)
	if err != nil {
		return fmt.Errorf("control socket %s: credentials of the listening process: %w", socket, err)
	}
	if ok && !t.uids[uid] {
		return fmt.Errorf("refusing control socket %s: the process listening on it runs as %s, not as %s, so it may not be fleetdns (if fleetdns runs as that user, say so with -user)", socket, userName(uid), t.whom())
	}
	return nil
}
