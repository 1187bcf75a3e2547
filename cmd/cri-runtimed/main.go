// Command cri-runtimed is the CRI v1 node runtime daemon. With no
// subcommand it serves CRI on its socket; `config default` prints the
// default configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	_ "github.com/cri-runtimed/cri-runtimed/pkg/podsandbox/pause"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/preflight"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// The shim is a hidden mode with its own flags, started by the daemon.
	if len(args) > 0 && args[0] == "shim" {
		return shim.Main(args[1:])
	}
	fs := flag.NewFlagSet("cri-runtimed", flag.ContinueOnError)
	configPath := fs.String("config", config.DefaultPath, "path of the TOML configuration file")
	showVersion := fs.Bool("version", false, "print the version and exit")
	pprofAddr := fs.String("debug-pprof-address", "", "serve Go's pprof profiles on this loopback host:port (debugging; off by default)")
	klog.InitFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: cri-runtimed [flags]            serve CRI v1 (default)
       cri-runtimed config default    print the default configuration
       cri-runtimed check             check that this node can run the daemon (exit 0 if it can)
       cri-runtimed images import FILE... | export FILE REF... | ls
                                      import, export and list images through the running daemon
       cri-runtimed pod checkpoint POD-ID DIR [CONTAINER-ID...] | restore DIR POD-CONFIG [CONTAINER-CONFIG...]
                                      CheckpointPod and RestorePod through the running daemon
       cri-runtimed checkpoint image ARCHIVE REF [-o FILE]
                                      a checkpoint OCI image from a checkpoint archive
       cri-runtimed version           print the version

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// Flags may also follow the command (`cri-runtimed check --config
	// FILE`, `images ls --config FILE`), as operators write them.
	rest := fs.Args()
	if n := commandWords(rest); n > 0 && n < len(rest) {
		if err := fs.Parse(rest[n:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = append(rest[:n:n], fs.Args()...)
	}
	if *showVersion {
		printVersion()
		return 0
	}
	explicit, explicitV := false, false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "config":
			explicit = true
		case "v":
			explicitV = true
		}
	})

	switch {
	case len(rest) == 0 || rest[0] == "serve":
		if err := closeOnExecInherited(); err != nil {
			fmt.Fprintf(os.Stderr, "cri-runtimed: inherited fds: %v\n", err)
			return 1
		}
		cfg, err := config.Load(*configPath, explicit)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
			return 1
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if *pprofAddr != "" {
			_, stopPprof, err := servePprof(*pprofAddr)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
				return 2
			}
			defer stopPprof()
		}
		load := func() (*config.Config, error) { return config.Load(*configPath, explicit) }
		// log_verbosity is the -v level unless -v was given.
		var setVerbosity func(int) error
		if !explicitV {
			setVerbosity = func(v int) error { return fs.Set("v", strconv.Itoa(v)) }
			if err := setVerbosity(cfg.LogVerbosity); err != nil {
				fmt.Fprintf(os.Stderr, "cri-runtimed: log_verbosity: %v\n", err)
				return 1
			}
		}
		if err := serve(ctx, cfg, load, setVerbosity); err != nil {
			klog.ErrorS(err, "cri-runtimed failed")
			klog.Flush()
			fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
			return 1
		}
		klog.Flush()
		return 0
	case rest[0] == "config" && len(rest) == 2 && rest[1] == "default":
		b, err := config.Default().Encode()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
			return 1
		}
		os.Stdout.Write(b)
		return 0
	case rest[0] == "check" && len(rest) == 1:
		return check(*configPath, explicit)
	case rest[0] == "images":
		return images(*configPath, explicit, rest[1:])
	case rest[0] == "pod":
		return pod(*configPath, explicit, rest[1:])
	case rest[0] == "checkpoint":
		return checkpointCmd(*configPath, explicit, rest[1:])
	case rest[0] == "version":
		printVersion()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "cri-runtimed: unknown command %q\n", rest)
		fs.Usage()
		return 2
	}
}

// check runs the preflight checks for the config at path and prints one
// line each.
func check(path string, explicit bool) int {
	cfg, err := config.Load(path, explicit)
	if err != nil {
		fmt.Printf("FAIL  config  %v\n", err)
		return 1
	}
	// The packages checked log as they would in the daemon; here the
	// report says it all.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !preflight.Report(os.Stdout, preflight.Run(ctx, preflight.Checks(cfg))) {
		fmt.Println("The daemon cannot run on this node as configured: fix each FAIL above.")
		return 1
	}
	return 0
}

// commandWords is how many of args name the command: 2 for `config
// default` and `images import|export|ls`, 1 for the others, 0 for none.
func commandWords(args []string) int {
	if len(args) == 0 {
		return 0
	}
	switch args[0] {
	case "config", "images":
		return min(2, len(args))
	case "serve", "check", "version":
		return 1
	}
	return 0
}

func printVersion() {
	fmt.Printf("cri-runtimed %s (revision %s)\n", version.Version, version.Revision)
}

// klogVerbosity is the -v level the daemon runs with, handed to shims.
func klogVerbosity() klog.Level {
	for v := klog.Level(10); v > 0; v-- {
		if klog.V(v).Enabled() {
			return v
		}
	}
	return 0
}
