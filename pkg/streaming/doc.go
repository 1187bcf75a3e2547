// Package streaming serves the exec, attach and port-forward streams of
// CRI: the Exec, Attach and PortForward RPCs answer with a URL of this
// server, and the client (kubelet, crictl) connects to it with SPDY or
// WebSocket.
//
// The protocol side is k8s.io/cri-streaming, the library kubelet's
// runtimes share: it hands out single-use URLs (a random token that its
// request cache forgets after one use or one minute), negotiates the
// protocols and calls back into a Runtime for each stream. This package
// owns the listener and the HTTP server around it (TLS, timeouts, the
// hijacked connections that outlive http.Server.Close), and the
// port-forward dial into a pod's network namespace. The Runtime itself,
// which knows containers and pods, is pkg/server's.
package streaming
