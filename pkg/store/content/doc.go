// Package content owns the content-addressed blob store under
// <root>/content: blobs/<alg>/<hex> for committed blobs and ingest/<ref>/
// for downloads in progress.
//
// A blob only becomes visible after its bytes were checked against the
// expected digest and size and the ingest file was renamed into place, so a
// reader never sees partial or corrupt content. An interrupted ingest keeps
// its bytes and the next writer for the same ref resumes from them.
package content
