//go:build e2e

package images

// MultiLayerFiles is what /data holds once the layers of MultiLayers are
// applied on top of each other (path -> content; directories end in "/"):
//
//	layer 2 adds  /data/a, /data/b, /data/b-link (a hard link to /data/b),
//	        /data/dir/x, /data/dir/sub/y, /etc/motd
//	layer 3 deletes /data/a (whiteout), makes /data/dir opaque and adds
//	        /data/dir/z
//
// so /data/a and /data/dir/x, /data/dir/sub are gone.
var MultiLayerFiles = map[string]string{
	"/data/b":      "b from layer 2\n",
	"/data/b-link": "b from layer 2\n",
	"/data/dir/":   "",
	"/data/dir/z":  "z from layer 3\n",
	"/etc/motd":    "multi-layer e2e image\n",
}

// MultiLayerGone are paths that exist in a lower layer of MultiLayers but
// must not exist in the unpacked image.
var MultiLayerGone = []string{"/data/a", "/data/dir/x", "/data/dir/sub", "/data/.wh.a", "/data/dir/.wh..wh..opq"}

// MultiLayers returns the two layers described at MultiLayerFiles; they go
// on top of the busybox base layer.
func MultiLayers() ([]Layer, error) {
	l2, err := NewLayer().
		Dir("data", 0o755).
		File("data/a", []byte("a from layer 2\n"), 0o644).
		File("data/b", []byte("b from layer 2\n"), 0o644).
		Hardlink("data/b-link", "data/b").
		Dir("data/dir", 0o755).
		File("data/dir/x", []byte("x from layer 2\n"), 0o644).
		Dir("data/dir/sub", 0o755).
		File("data/dir/sub/y", []byte("y from layer 2\n"), 0o644).
		File("etc/motd", []byte("multi-layer e2e image\n"), 0o644).
		Build()
	if err != nil {
		return nil, err
	}
	l3, err := NewLayer().
		Whiteout("data/a").
		Dir("data/dir", 0o755).
		Opaque("data/dir").
		File("data/dir/z", []byte("z from layer 3\n"), 0o644).
		Build()
	if err != nil {
		return nil, err
	}
	return []Layer{l2, l3}, nil
}
