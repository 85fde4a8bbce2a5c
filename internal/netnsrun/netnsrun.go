//go:build linux

// Package netnsrun runs code with its OS thread in a network namespace:
// what the test topologies and the demo fabric need to create sockets and
// write /proc/sys/net files of a namespace from a process that lives in
// another.
package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// errThreadLost reports that a locked thread could not be put back in its
// namespace; the thread is then left locked so Go retires it rather than
// running other goroutines in the wrong namespace.
type errThreadLost struct{ err error }

func (e errThreadLost) Error() string { return "restore thread netns: " + e.err.Error() }

// Do runs fn on a fresh goroutine locked to its OS thread, with the thread
// in namespace ns (named name, for errors). fn must not start goroutines
// that expect to be in the namespace.
func Do(ns netns.NsHandle, name string, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := enter(ns, name, fn)
		var lost errThreadLost
		if !errors.As(err, &lost) {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// DoNamed is Do in the namespace named name (a file in /var/run/netns),
// opened for the call; fn's error comes back naming the namespace.
func DoNamed(name string, fn func() error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns %q: %w", name, err)
	}
	defer ns.Close()
	if err := Do(ns, fmt.Sprintf("netns %q", name), fn); err != nil {
		return fmt.Errorf("netns %q: %w", name, err)
	}
	return nil
}

func enter(ns netns.NsHandle, name string, fn func() error) error {
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errThreadLost{err}
	}
	return ferr
}

// NewNamed creates the named network namespace (/var/run/netns/name) and
// returns a handle to it, without moving any goroutine into it.
func NewNamed(name string) (netns.NsHandle, error) {
	var fd netns.NsHandle
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := func() error {
			orig, err := netns.Get()
			if err != nil {
				return err
			}
			defer orig.Close()
			// NewNamed moves the calling thread into the new namespace.
			h, err := netns.NewNamed(name)
			fd = h
			if rerr := netns.Set(orig); rerr != nil {
				return errThreadLost{rerr}
			}
			return err
		}()
		var lost errThreadLost
		if !errors.As(err, &lost) {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	err := <-ch
	return fd, err
}
