package server

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-runtimed/cri-runtimed/pkg/checkpoint"
	"github.com/cri-runtimed/cri-runtimed/pkg/cni"
	"github.com/cri-runtimed/cri-runtimed/pkg/container"
	"github.com/cri-runtimed/cri-runtimed/pkg/image"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/reference"
	"github.com/cri-runtimed/cri-runtimed/pkg/image/registry"
	"github.com/cri-runtimed/cri-runtimed/pkg/oci"
	"github.com/cri-runtimed/cri-runtimed/pkg/podsandbox"
	"github.com/cri-runtimed/cri-runtimed/pkg/registrar"
	"github.com/cri-runtimed/cri-runtimed/pkg/shim"
	"github.com/cri-runtimed/cri-runtimed/pkg/snapshot/layer"
	"github.com/cri-runtimed/cri-runtimed/pkg/store/content"
)

// TestToStatus pins the one mapping from internal errors to gRPC codes
// that kubelet and crictl rely on (DESIGN invariant 5), wrapped as the
// packages wrap them.
func TestToStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		err  error
		want codes.Code
	}{
		{wrap(errInvalid), codes.InvalidArgument},
		{wrap(checkpoint.ErrUnavailable), codes.FailedPrecondition},
		{wrap(reference.ErrInvalid), codes.InvalidArgument},
		{wrap(oci.ErrInvalid), codes.InvalidArgument},
		{wrap(podsandbox.ErrInvalid), codes.InvalidArgument},
		{wrap(container.ErrAmbiguous), codes.InvalidArgument},
		{wrap(cni.ErrInvalidArgument), codes.InvalidArgument},
		{wrap(podsandbox.ErrAlreadyExists), codes.AlreadyExists},
		{wrap(container.ErrAlreadyExists), codes.AlreadyExists},
		{wrap(podsandbox.ErrNotFound), codes.NotFound},
		{wrap(container.ErrNotFound), codes.NotFound},
		{wrap(image.ErrNotFound), codes.NotFound},
		{wrap(registry.ErrNotFound), codes.NotFound},
		{wrap(registry.ErrUnauthorized), codes.PermissionDenied},
		{wrap(container.ErrNotRunning), codes.FailedPrecondition},
		{wrap(container.ErrState), codes.FailedPrecondition},
		{wrap(podsandbox.ErrNotReady), codes.FailedPrecondition},
		{wrap(container.ErrExecTimeout), codes.DeadlineExceeded},
		{wrap(image.ErrPullStuck), codes.DeadlineExceeded},
		{wrap(image.ErrInvalidImage), codes.FailedPrecondition},
		{wrap(registry.ErrSchema1), codes.Unimplemented},
		{wrap(registry.ErrTooLarge), codes.ResourceExhausted},
		{wrap(layer.ErrUnsafePath), codes.FailedPrecondition},
		{wrap(content.ErrDigestMismatch), codes.DataLoss},
		{wrap(shim.ErrShimGone), codes.FailedPrecondition},
		{wrap(registrar.ErrClosed), codes.Unavailable},
		{wrap(image.ErrTooLarge), codes.ResourceExhausted},
		{wrap(context.Canceled), codes.Canceled},
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		// A pull cancelled because a layer was refused reports the layer.
		{fmt.Errorf("pull: %w", fmt.Errorf("layer x: %w", registry.ErrNotFound)), codes.NotFound},
		// The controllers' errors win over the lower ones they wrap.
		{fmt.Errorf("%w: exec in container: %w", container.ErrNotRunning, shim.ErrNotFound), codes.FailedPrecondition},
		{wrap(&registry.StatusError{StatusCode: 503}), codes.Unavailable},
		{wrap(&registry.StatusError{StatusCode: 429}), codes.Unavailable},
		{wrap(&registry.StatusError{StatusCode: 403}), codes.PermissionDenied},
		{wrap(&registry.StatusError{StatusCode: 418}), codes.Unknown},
		{errors.New("runc said no"), codes.Unknown},
		{status.Error(codes.Unimplemented, "kept"), codes.Unimplemented},
	}
	for _, tc := range tests {
		got := status.Code(toStatus(tc.err))
		if got != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) is not nil")
	}
	for _, s := range sentinelCodes {
		if s.code == codes.Unknown || s.code == codes.OK {
			t.Errorf("sentinel %q maps to %v", s.err, s.code)
		}
	}
}

// TestEverySentinelMapped reads the daemon's packages and fails for any
// exported sentinel error (a package-level Err... = errors.New) that
// sentinelCodes does not list, so a new one cannot silently reach
// kubelet as Unknown.
func TestEverySentinelMapped(t *testing.T) {
	const module = "github.com/cri-runtimed/cri-runtimed/"
	declared := map[string]bool{} // import path + "." + name
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasSuffix(d.Name(), "test")) {
			return filepath.SkipDir // test helpers (registrytest, shimtest)
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkg := module + "pkg/" + filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../")))
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() || !strings.HasPrefix(name.Name, "Err") || i >= len(vs.Values) {
						continue
					}
					if call, ok := vs.Values[i].(*ast.CallExpr); ok {
						if sel, ok := call.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "New" || sel.Sel.Name == "Errorf") {
							declared[pkg+"."+name.Name] = true
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) < 40 {
		t.Fatalf("found only %d sentinels; is the walk reading pkg/?", len(declared))
	}

	// The sentinels sentinelCodes names, read from errors.go itself.
	f, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]string{}
	for _, imp := range f.Imports {
		p := strings.Trim(imp.Path.Value, `"`)
		imports[filepath.Base(p)] = p
	}
	mapped := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "sentinelCodes" {
			return true
		}
		ast.Inspect(vs, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && imports[id.Name] != "" {
					mapped[imports[id.Name]+"."+sel.Sel.Name] = true
				}
			}
			return true
		})
		return false
	})
	for s := range declared {
		if !mapped[s] {
			t.Errorf("sentinel %s has no gRPC code in sentinelCodes", s)
		}
	}
}

func TestSendBatches(t *testing.T) {
	for _, n := range []int{0, 1, 199, 200, 201, 450} {
		items := make([]int, n)
		for i := range items {
			items[i] = i
		}
		var got []int
		sends := 0
		err := sendBatches(items, streamBatch, func(b []int) error {
			if len(b) == 0 || len(b) > streamBatch {
				t.Fatalf("batch of %d", len(b))
			}
			sends++
			got = append(got, b...)
			return nil
		})
		if err != nil || len(got) != n || sends != (n+streamBatch-1)/streamBatch {
			t.Fatalf("n=%d: %d items in %d sends, %v", n, len(got), sends, err)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("n=%d: item %d is %d", n, i, v)
			}
		}
	}
}

func TestFitOutput(t *testing.T) {
	b := func(n int) []byte { return make([]byte, n) }
	for _, tc := range []struct {
		out, err, limit  int
		wantOut, wantErr int
	}{
		{10, 10, 100, 10, 10},
		{100, 0, 100, 100, 0},
		{16 << 20, 16 << 20, 16<<20 - 1024, 8<<20 - 512, 8<<20 - 512},
		{30, 200, 100, 30, 70},
		{200, 30, 100, 70, 30},
		{200, 200, 101, 50, 51},
	} {
		o, e := fitOutput(b(tc.out), b(tc.err), tc.limit)
		if len(o) != tc.wantOut || len(e) != tc.wantErr {
			t.Errorf("fitOutput(%d, %d, %d) = %d, %d; want %d, %d", tc.out, tc.err, tc.limit, len(o), len(e), tc.wantOut, tc.wantErr)
		}
	}
}
