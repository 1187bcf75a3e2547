package main

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCloseOnExecInherited(t *testing.T) {
	for name, mark := range map[string]func() error{
		"close_range": closeOnExecInherited,
		"proc":        closeOnExecFromProc,
	} {
		t.Run(name, func(t *testing.T) {
			// An fd opened as a parent would leave it: no O_CLOEXEC.
			fd, err := unix.Open(filepath.Join(t.TempDir(), "inherited"), unix.O_CREAT|unix.O_RDWR, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
				t.Fatal("the fd starts close-on-exec: the test proves nothing")
			}
			if err := mark(); err != nil {
				t.Fatal(err)
			}
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err != nil {
				t.Fatalf("the fd was closed, not marked: %v", err)
			}
			if flags&unix.FD_CLOEXEC == 0 {
				t.Error("the fd is not close-on-exec")
			}
			for _, std := range []int{0, 1, 2} {
				if flags, _ := unix.FcntlInt(uintptr(std), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
					t.Errorf("fd %d was marked close-on-exec", std)
				}
			}
		})
	}
}
