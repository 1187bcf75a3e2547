package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// streamBatch is how many items one message of a Stream* RPC carries;
// small enough to stay far below the gRPC message limit.
const streamBatch = 200

// sendBatches sends items in slices of at most n, as the streaming list
// RPCs do for nodes whose lists outgrow one gRPC message.
func sendBatches[T any](items []T, n int, send func([]T) error) error {
	for len(items) > 0 {
		k := min(n, len(items))
		if err := send(items[:k]); err != nil {
			return err
		}
		items = items[k:]
	}
	return nil
}

// PullImage pulls an image and returns its ID, the same value Image.Id and
// ContainerStatus.ImageId carry.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	start := time.Now()
	name := req.GetImage().GetImage()
	if name == "" {
		err := fmt.Errorf("%w: image.image is empty", errInvalid)
		s.telemetry.PullDone(time.Since(start), codeOf(err).String())
		return nil, err
	}
	creds, err := credentials(req.GetAuth())
	if err != nil {
		// A malformed auth is a failed pull too.
		s.telemetry.PullDone(time.Since(start), codeOf(err).String())
		return nil, err
	}
	img, err := s.images.Pull(ctx, name, creds)
	if err != nil {
		s.telemetry.PullDone(time.Since(start), codeOf(err).String())
		return nil, err
	}
	s.telemetry.PullDone(time.Since(start), "")
	return &runtimeapi.PullImageResponse{ImageRef: img.ID.String()}, nil
}

func credentials(auth *runtimeapi.AuthConfig) (registry.Credentials, error) {
	if auth == nil {
		return registry.Credentials{}, nil
	}
	c := registry.Credentials{
		Username:      auth.GetUsername(),
		Password:      auth.GetPassword(),
		IdentityToken: auth.GetIdentityToken(),
		RegistryToken: auth.GetRegistryToken(),
	}
	if a := auth.GetAuth(); a != "" {
		raw, err := base64.StdEncoding.DecodeString(a)
		if err != nil {
			return c, fmt.Errorf("%w: auth.auth is not base64: %v", errInvalid, err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return c, fmt.Errorf("%w: auth.auth must encode user:password", errInvalid)
		}
		c.Username, c.Password = user, pass
	}
	return c, nil
}

// ListImages lists images, optionally only the one the filter names.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

// StreamImages sends the same list as ListImages in batches, for nodes
// whose list outgrows one gRPC message.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendBatches(imgs, streamBatch, func(batch []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: batch})
	})
}

func (s *Server) listImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if name := filter.GetImage().GetImage(); name != "" {
		img, err := s.images.Get(ctx, name)
		if errors.Is(err, image.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		img.Pinned = img.Pinned || s.imagePinned(ctx, img)
		return []*runtimeapi.Image{toCRIImage(img)}, nil
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	pinned := s.pinnedImages(ctx)
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		img.Pinned = img.Pinned || pinned[img.ID.String()]
		out = append(out, toCRIImage(img))
	}
	return out, nil
}

// ImageStatus returns the image, or an empty response when it is not here.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, fmt.Errorf("%w: image.image is empty", errInvalid)
	}
	img, err := s.images.Get(ctx, name)
	if errors.Is(err, image.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	img.Pinned = img.Pinned || s.imagePinned(ctx, img)
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := s.imageInfo(ctx, img)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

func (s *Server) imageInfo(ctx context.Context, img meta.Image) (map[string]string, error) {
	info := struct {
		ImageSpec    any      `json:"imageSpec,omitempty"`
		ArtifactType string   `json:"artifactType,omitempty"`
		ChainIDs     []string `json:"chainIDs"`
		Manifest     string   `json:"manifest"`
		Snapshotter  string   `json:"snapshotter"`
	}{ArtifactType: img.ArtifactType, Manifest: img.Manifest.String(), Snapshotter: img.Snapshotter}
	// An artifact has no image config.
	if img.ArtifactType == "" {
		cfg, err := s.images.Config(ctx, img)
		if err != nil {
			return nil, err
		}
		info.ImageSpec = cfg
	}
	for _, c := range img.ChainIDs {
		info.ChainIDs = append(info.ChainIDs, c.String())
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	return map[string]string{"info": string(b)}, nil
}

// pinnedImages are the IDs of the images kubelet's image GC must leave
// alone: the sandbox image (pods cannot start without it) and the image
// of every container that has not exited, and the images mounted as
// volumes. From memory: no disk read but
// the sandbox image's lookup.
func (s *Server) pinnedImages(ctx context.Context) map[string]bool {
	pinned := s.ctrs.ImagesInUse()
	if ref := s.cfg.Runtime.SandboxImage; ref != "" {
		if img, err := s.images.Get(ctx, ref); err == nil {
			pinned[img.ID.String()] = true
		}
	}
	return pinned
}

// imagePinned is pinnedImages()[img.ID] for one image, without building
// the set or looking the sandbox image up unless img may be it.
func (s *Server) imagePinned(ctx context.Context, img meta.Image) bool {
	id := img.ID.String()
	if s.ctrs.ImageInUse(id) {
		return true
	}
	ref := s.cfg.Runtime.SandboxImage
	if ref == "" {
		return false
	}
	// Get finds a name through an index of exactly the records' tags and
	// digests; only a reference that may be an image ID (or a prefix of
	// one) needs the lookup itself.
	name, err := reference.Parse(ref)
	if err == nil && (slices.Contains(img.RepoTags, name.String()) || slices.Contains(img.RepoDigests, name.String())) {
		return true
	}
	if hex := strings.TrimPrefix(ref, "sha256:"); err == nil && (len(hex) < 12 || strings.Trim(hex, "0123456789abcdef") != "") {
		return false
	}
	sandbox, err := s.images.Get(ctx, ref)
	return err == nil && sandbox.ID == img.ID
}

func toCRIImage(img meta.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID.String()},
		Pinned:      img.Pinned,
	}
	out.Uid, out.Username = imageUser(img.User)
	return out
}

// imageUser reads the config's User the way kubelet expects it: a numeric
// user is a UID, anything else a username; the group part is dropped.
func imageUser(user string) (*runtimeapi.Int64Value, string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &runtimeapi.Int64Value{Value: uid}, ""
	}
	return nil, user
}

// RemoveImage removes an image or one of its tags; unknown images succeed.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, fmt.Errorf("%w: image.image is empty", errInvalid)
	}
	// An image volume keeps its image; one of the image's several tags
	// can still go.
	mounted := image.KeepIf(func(img meta.Image) error {
		if ctr := s.ctrs.ImageVolumeUser(img.ID.String()); ctr != "" {
			return fmt.Errorf("%w: image %s is mounted by container %s; remove the container first", container.ErrImageInUse, img.ID, ctr)
		}
		return nil
	})
	if err := s.images.Remove(ctx, name, mounted); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the image filesystem's usage.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	mountpoint, bytes, inodes, err := s.images.FsUsage(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(bytes)},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(inodes)},
	}}}, nil
}
