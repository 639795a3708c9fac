package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestSdNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	sdNotify("WATCHDOG=1")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "WATCHDOG=1" {
		t.Errorf("systemd got %q (%v), want WATCHDOG=1", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	sdNotify("READY=1") // not under systemd: nothing, no panic
}
