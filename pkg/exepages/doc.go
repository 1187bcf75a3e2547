// Package exepages owns the resident pages of the running executable's
// read-only mappings (its text and read-only data).
//
// Why it exists: on kernels whose page cache holds executables in large
// folios (Linux 6.18 maps a whole large folio, up to 2 MiB, on a fault in
// any page of it), a Go daemon that touches a few bytes here and there
// across its 26 MB binary ends up with nearly all of it in its RSS,
// although it uses a fraction. Evict turns those mappings into ones that
// fault in page by page, from the file; DisableFaultAround does the same
// for pages already cached, which the kernel otherwise maps 64 KiB (or a
// large folio) at a time around each one touched.
package exepages
