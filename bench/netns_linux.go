package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs f on an OS thread that has joined the network namespace name (as made by `ip
// netns add`, so /run/netns/NAME). Sockets f creates belong to that namespace for their whole
// life, whichever thread later uses them: that is how the load generator and readiness checks
// reach servers that listen on a namespace's loopback. f must create its sockets itself, not in
// goroutines it starts, which run on other threads.
//
// The thread goes back to its own namespace afterwards and lives on. Letting it end instead (a
// goroutine that exits locked) would kill every child process that thread had forked earlier
// for another goroutine: the systems are started with Pdeathsig, which the kernel ties to the
// forking thread, not the process. Only if the way back fails is the thread left locked, to end.
func InNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		ns, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		err = f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
