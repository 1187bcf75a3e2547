package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/admin"
	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
)

const podUsage = `Usage: cri-runtimed pod checkpoint [-timeout D] POD-ID DIR [CONTAINER-ID...]
           CheckpointPod: freeze the pod's containers (default: every running one) together
           and checkpoint them into the new directory DIR
       cri-runtimed pod restore [-no-start] DIR POD-CONFIG [CONTAINER-CONFIG...]
           RestorePod: a new pod (POD-CONFIG: a PodSandboxConfig as JSON, as crictl runp reads)
           with the containers of the checkpoint DIR (their configs: the checkpointed ones, or
           the CONTAINER-CONFIG files), then started unless -no-start
       cri-runtimed checkpoint image ARCHIVE REF [-o FILE]
           a checkpoint OCI image named REF from a CheckpointContainer archive: imported into
           the running daemon, or written to FILE as an OCI layout archive (- is stdout)
The pod commands speak CRI on the daemon's socket (grpc.address); the image import uses its
admin socket. All need root.
`

// pod runs `cri-runtimed pod checkpoint|restore …`: the client of the
// CheckpointPod and RestorePod RPCs, which crictl does not have.
func pod(path string, explicit bool, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, podUsage)
		return 2
	}
	cfg, err := config.Load(path, explicit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conn, err := grpc.NewClient("unix://"+cfg.GRPC.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	fs := flag.NewFlagSet("pod "+args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, podUsage) }
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	noStart := fs.Bool("no-start", false, "leave the restored containers created")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	rest := fs.Args()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch {
	case args[0] == "checkpoint" && len(rest) >= 2:
		err = checkpointPod(ctx, rc, rest[0], rest[1], rest[2:])
	case args[0] == "restore" && len(rest) >= 2:
		err = restorePod(ctx, rc, rest[0], rest[1], rest[2:], !*noStart)
	default:
		fmt.Fprint(os.Stderr, podUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	return 0
}

func checkpointPod(ctx context.Context, rc runtimeapi.RuntimeServiceClient, podID, dir string, ids []string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		resp, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			PodSandboxId: podID, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
		if err != nil {
			return err
		}
		for _, c := range resp.GetContainers() {
			ids = append(ids, c.GetId())
		}
		if len(ids) == 0 {
			return fmt.Errorf("pod %s has no running container", podID)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	start := time.Now()
	if _, err := rc.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: dir, ContainerIds: ids}); err != nil {
		os.Remove(dir)
		return err
	}
	fmt.Printf("checkpointed pod %s (%d containers) into %s in %v\n", podID, len(ids), dir, time.Since(start).Round(time.Millisecond))
	return nil
}

func restorePod(ctx context.Context, rc runtimeapi.RuntimeServiceClient, dir, podConfig string, ctrConfigs []string, start bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var pc runtimeapi.PodSandboxConfig
	if err := readProtoJSON(podConfig, &pc); err != nil {
		return err
	}
	req := &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: &pc}
	if len(ctrConfigs) == 0 {
		if req.ContainerConfigs, err = checkpointedConfigs(dir); err != nil {
			return err
		}
	}
	for _, f := range ctrConfigs {
		var cc runtimeapi.ContainerConfig
		if err := readProtoJSON(f, &cc); err != nil {
			return err
		}
		req.ContainerConfigs = append(req.ContainerConfigs, &cc)
	}
	t0 := time.Now()
	resp, err := rc.RestorePod(ctx, req)
	if err != nil {
		return err
	}
	fmt.Printf("pod %s restored from %s in %v\n", resp.GetPodSandboxId(), dir, time.Since(t0).Round(time.Millisecond))
	for _, c := range resp.GetRestoredContainers() {
		state := "created"
		if start {
			t := time.Now()
			if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
				return fmt.Errorf("start %s (%s): %w", c.GetName(), c.GetContainerId(), err)
			}
			state = fmt.Sprintf("running (restored in %v)", time.Since(t).Round(time.Millisecond))
		}
		fmt.Printf("container %s %s %s\n", c.GetName(), c.GetContainerId(), state)
	}
	return nil
}

// checkpointedConfigs reads the CRI config of every container of a pod
// checkpoint (its config.dump).
func checkpointedConfigs(dir string) ([]*runtimeapi.ContainerConfig, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*runtimeapi.ContainerConfig
	for _, e := range entries {
		if !e.IsDir() || !checkpoint.IsDir(filepath.Join(dir, e.Name())) {
			continue
		}
		ck, err := checkpoint.Load(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var cc runtimeapi.ContainerConfig
		if err := protojson.Unmarshal(ck.Config.CRIConfig, &cc); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", e.Name(), checkpoint.ConfigDump, err)
		}
		out = append(out, &cc)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no container checkpoint", dir)
	}
	return out, nil
}

// readProtoJSON reads a CRI message as JSON (field names in either
// protobuf or JSON form, as crictl's files have them).
func readProtoJSON(path string, m proto.Message) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// checkpointCmd runs `cri-runtimed checkpoint image ARCHIVE REF [-o FILE]`.
func checkpointCmd(path string, explicit bool, args []string) int {
	if len(args) < 3 || args[0] != "image" {
		fmt.Fprint(os.Stderr, podUsage)
		return 2
	}
	archive, ref := args[1], args[2]
	fs := flag.NewFlagSet("checkpoint image", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, podUsage) }
	out := fs.String("o", "", "write the OCI layout archive to this file (- is stdout) instead of importing it")
	if err := fs.Parse(args[3:]); err != nil || fs.NArg() != 0 {
		return 2
	}
	if err := checkpointImage(path, explicit, archive, ref, *out); err != nil {
		fmt.Fprintf(os.Stderr, "cri-runtimed: %v\n", err)
		return 1
	}
	return 0
}

func checkpointImage(path string, explicit bool, archive, ref, out string) error {
	if out == "-" {
		_, err := checkpoint.WriteImage(os.Stdout, archive, ref)
		return err
	}
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		if _, err := checkpoint.WriteImage(f, archive, ref); err != nil {
			f.Close()
			os.Remove(out)
			return err
		}
		return f.Close()
	}
	cfg, err := config.Load(path, explicit)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The archive streams into the import as it is written.
	pr, pw := io.Pipe()
	go func() { // ends when the import stops reading (pr closed)
		_, err := checkpoint.WriteImage(pw, archive, ref)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	imgs, err := admin.NewClient(cfg.AdminSocketPath()).Import(ctx, pr, -1)
	if err != nil {
		return fmt.Errorf("import checkpoint image %s: %w", ref, err)
	}
	for _, img := range imgs {
		fmt.Printf("imported checkpoint image %s %s\n", imageName(img), shortID(img.ID))
	}
	if len(imgs) == 0 {
		return errors.New("the daemon imported no image")
	}
	return nil
}
