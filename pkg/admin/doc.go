// Package admin owns the daemon's admin socket: operations an operator
// runs on the node that are not CRI (importing image archives, exporting
// images, listing them), served to `cri-runtimed images …` while the
// daemon runs, so that the daemon stays the only writer of its stores.
//
// The socket lives in the daemon's state directory with mode 0600 and
// serves only processes of the daemon's user (peercred). Its protocol is
// HTTP/1.1 with JSON answers: an archive of hundreds of megabytes is a
// request or response body streamed as it is read, with no framing of
// our own and no generated code (gRPC would need both), and an operator
// can drive it with `curl --unix-socket`:
//
//	POST /v1/images/import           body: the archive → {"images": [...]}
//	GET  /v1/images/export?ref=R...  → an OCI image layout tar
//	GET  /v1/images                  → {"images": [...]}
//
// Errors come back as {"error": "..."} with 400 for a bad archive or
// name, 404 for an unknown image, 500 otherwise. An export that fails
// after it started streaming aborts the connection, so a client never
// takes a cut archive for a whole one.
package admin
