package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/cri-runtimed/cri-runtimed/pkg/admin"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
)

const imagesUsage = `Usage: cri-runtimed images import FILE...        import OCI layout or docker save archives (plain or compressed; - is stdin)
       cri-runtimed images export FILE REF...    export images as an OCI layout archive (- is stdout)
       cri-runtimed images ls [-q]               list the node's images (-q: IDs only)
They talk to the running daemon over its admin socket (<state>/admin.sock, root only).
`

// images runs `cri-runtimed images …` against the daemon of the config
// at path.
func images(path string, explicit bool, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, imagesUsage)
		return 2
	}
	cfg, err := config.Load(path, explicit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := admin.NewClient(cfg.AdminSocketPath())
	switch {
	case args[0] == "import" && len(args) > 1:
		err = importArchives(ctx, c, args[1:])
	case args[0] == "export" && len(args) > 2:
		err = exportArchive(ctx, c, args[1], args[2:])
	case args[0] == "ls" && len(args) == 1, args[0] == "ls" && len(args) == 2 && args[1] == "-q":
		err = listImages(ctx, c, len(args) == 2)
	default:
		fmt.Fprint(os.Stderr, imagesUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	return 0
}

// importArchives imports each file in turn; the first failure stops
// (each archive is imported whole or not at all).
func importArchives(ctx context.Context, c *admin.Client, files []string) error {
	for _, name := range files {
		r, size, closeFn, err := openInput(name)
		if err != nil {
			return err
		}
		imgs, err := c.Import(ctx, r, size)
		closeFn()
		if err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
		for _, img := range imgs {
			fmt.Printf("imported %s %s\n", imageName(img), shortID(img.ID))
		}
	}
	return nil
}

func openInput(name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return os.Stdin, -1, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, fi.Size(), func() { f.Close() }, nil
}

// exportArchive writes to a temporary file beside name and renames it
// into place once the daemon sent the whole archive.
func exportArchive(ctx context.Context, c *admin.Client, name string, refs []string) error {
	if name == "-" {
		return c.Export(ctx, os.Stdout, refs)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".part-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := c.Export(ctx, tmp, refs); err != nil {
		tmp.Close()
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func listImages(ctx context.Context, c *admin.Client, quiet bool) error {
	imgs, err := c.List(ctx)
	if err != nil {
		return err
	}
	if quiet {
		for _, img := range imgs {
			fmt.Println(img.ID)
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tID\tSIZE")
	for _, img := range imgs {
		names := append(append([]string{}, img.RepoTags...), img.RepoDigests...)
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n, shortID(img.ID), humanSize(img.Size))
		}
	}
	return tw.Flush()
}

func imageName(img admin.Image) string {
	if len(img.RepoTags) > 0 {
		return strings.Join(img.RepoTags, ",")
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return "<none>"
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.3g%cB", float64(n)/float64(div), "kMGTPE"[exp])
}
