package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/peercred"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/meta"
)

// Images is what the admin socket does with the node's images
// (*image.Service).
type Images interface {
	Import(ctx context.Context, r io.Reader) ([]meta.Image, error)
	Export(ctx context.Context, w io.Writer, names []string) error
	List(ctx context.Context) ([]meta.Image, error)
}

// Image is an image as the admin socket reports it.
type Image struct {
	ID          string    `json:"id"`
	RepoTags    []string  `json:"repoTags,omitempty"`
	RepoDigests []string  `json:"repoDigests,omitempty"`
	Size        int64     `json:"size"`
	Created     time.Time `json:"created"`
}

type imagesResponse struct {
	Images []Image `json:"images"`
}

type errorResponse struct {
	Error string `json:"error"`
}

// Server serves the admin socket.
type Server struct {
	srv  *http.Server
	done chan struct{}
}

// Serve serves images on lis (the caller made it with the socket's mode)
// until Close.
func Serve(lis net.Listener, images Images) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images/import", func(w http.ResponseWriter, r *http.Request) {
		imgs, err := images.Import(r.Context(), r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, imagesResponse{Images: toImages(imgs)})
	})
	mux.HandleFunc("GET /v1/images/export", func(w http.ResponseWriter, r *http.Request) {
		ew := &startedWriter{w: w}
		w.Header().Set("Content-Type", "application/x-tar")
		if err := images.Export(r.Context(), ew, r.URL.Query()["ref"]); err != nil {
			if !ew.started {
				writeError(w, err)
				return
			}
			klog.ErrorS(err, "Image export failed while streaming")
			// Headers and part of the archive are out: only a broken
			// connection tells the client it is not whole.
			panic(http.ErrAbortHandler)
		}
	})
	mux.HandleFunc("GET /v1/images", func(w http.ResponseWriter, r *http.Request) {
		imgs, err := images.List(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, imagesResponse{Images: toImages(imgs)})
	})
	s := &Server{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(peerListener{lis}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Admin socket stopped")
		}
	}()
	return s
}

// Close stops serving: requests in progress get until ctx ends, then
// their connections are closed (an import cut short records nothing).
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}

// peerListener accepts only peers of the daemon's own user.
type peerListener struct{ net.Listener }

func (l peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := peercred.SameUser(c); err != nil {
			klog.InfoS("Admin socket: refused a connection", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}

// startedWriter notes whether anything was written (and so the status
// sent).
type startedWriter struct {
	w       io.Writer
	started bool
}

func (s *startedWriter) Write(b []byte) (int, error) {
	s.started = true
	return s.w.Write(b)
}

func toImages(imgs []meta.Image) []Image {
	out := make([]Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, Image{ID: i.ID.String(), RepoTags: i.RepoTags, RepoDigests: i.RepoDigests, Size: i.Size, Created: i.Created})
	}
	return out
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, image.ErrInvalidArchive), errors.Is(err, image.ErrInvalidImage),
		errors.Is(err, image.ErrTooLarge), errors.Is(err, reference.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, image.ErrNotFound):
		code = http.StatusNotFound
	}
	writeJSON(w, code, errorResponse{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.V(2).InfoS("Admin socket: writing the answer", "err", err)
	}
}
