package main

import (
	"net"
	"os"
)

// sdNotify tells systemd about the service (sd_notify(3)): READY=1 once the listeners are up,
// WATCHDOG=1 from the health loop, so that with WatchdogSec= a wedged process is killed and
// its BGP sessions close at once. Without NOTIFY_SOCKET (not under systemd) it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
