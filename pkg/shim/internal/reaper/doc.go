// Package reaper is the shim's only caller of wait4. The shim is a child
// subreaper, so every process of its containers that loses its parent ends
// up as its child; a single loop reaps them all on SIGCHLD and hands each
// exit to whoever waits for that pid. Nothing else in the shim may wait for
// a child (no exec.Cmd.Wait), or exits would be stolen.
package reaper
