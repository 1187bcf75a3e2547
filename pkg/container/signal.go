package container

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Real-time signals as Linux userspace numbers them (glibc and runc
// reserve 32 and 33): SIGRTMIN is 34, SIGRTMAX 64.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// signalFromCRI is the signal a CRI Signal names; RUNTIME_DEFAULT is 0.
// kubelet's names are SIGNAL_<name>, with SIGRTMIN+n and SIGRTMAX-n
// spelled SIGRTMINPLUSn and SIGRTMAXMINUSn.
func signalFromCRI(s runtimeapi.Signal) (syscall.Signal, error) {
	if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return 0, nil
	}
	name, ok := runtimeapi.Signal_name[int32(s)]
	if !ok {
		return 0, fmt.Errorf("%w: stop_signal %d is not a signal", ErrInvalid, s)
	}
	sig := parseSignalName(strings.TrimPrefix(name, "SIGNAL_"))
	if sig == 0 {
		return 0, fmt.Errorf("%w: stop_signal %s is not a signal of this platform", ErrInvalid, name)
	}
	return sig, nil
}

// signalToCRI is the CRI name of sig; RUNTIME_DEFAULT for one CRI has no
// name for.
func signalToCRI(sig syscall.Signal) runtimeapi.Signal {
	name := signalName(sig)
	if name == "" {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	name = strings.NewReplacer("+", "PLUS", "-", "MINUS").Replace(name)
	return runtimeapi.Signal(runtimeapi.Signal_value["SIGNAL_"+name])
}

// signalName is the name of sig as images and kubelet write it
// ("SIGTERM", "SIGRTMIN+3"), "" if it has none.
func signalName(sig syscall.Signal) string {
	switch {
	case sig == sigRTMin:
		return "SIGRTMIN"
	case sig == sigRTMax:
		return "SIGRTMAX"
	case sig > sigRTMin && sig <= sigRTMin+15:
		return "SIGRTMIN+" + strconv.Itoa(int(sig)-sigRTMin)
	case sig > sigRTMin+15 && sig < sigRTMax:
		return "SIGRTMAX-" + strconv.Itoa(sigRTMax-int(sig))
	}
	return unix.SignalName(sig)
}

// parseSignalName reads a signal as an image's StopSignal or CRI names it:
// a number, "TERM", "SIGTERM", "SIGRTMIN+3", "SIGRTMINPLUS3"; 0 if none.
func parseSignalName(s string) syscall.Signal {
	if n, err := strconv.Atoi(s); err == nil {
		if n > 0 && n <= sigRTMax {
			return syscall.Signal(n)
		}
		return 0
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"SIGRTMIN+", sigRTMin, 1}, {"SIGRTMINPLUS", sigRTMin, 1}, {"SIGRTMAX-", sigRTMax, -1}, {"SIGRTMAXMINUS", sigRTMax, -1}} {
		if rest, ok := strings.CutPrefix(name, rt.prefix); ok {
			n, err := strconv.Atoi(rest)
			if sig := rt.base + rt.sign*n; err == nil && n >= 0 && sig >= sigRTMin && sig <= sigRTMax {
				return syscall.Signal(sig)
			}
			return 0
		}
	}
	switch name {
	case "SIGRTMIN":
		return sigRTMin
	case "SIGRTMAX":
		return sigRTMax
	case "SIGIOT":
		return unix.SIGABRT
	case "SIGCLD":
		return unix.SIGCHLD
	case "SIGPOLL":
		return unix.SIGIO
	}
	return unix.SignalNum(name)
}
