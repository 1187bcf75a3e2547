// Package server owns the CRI v1 gRPC surface: RuntimeService and
// ImageService handlers, argument validation, the conversion between CRI
// protobuf types and the daemon's internal types, and the single place
// where internal sentinel errors become gRPC status codes (errors.go).
//
// It touches no disk, network namespace or runc directly: it calls the
// owning packages (pkg/image today; pkg/podsandbox and pkg/container next).
package server
