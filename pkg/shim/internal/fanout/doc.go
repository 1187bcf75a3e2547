// Package fanout copies a container's output to attached readers without
// ever blocking the container: a reader that does not keep up loses data
// instead of stalling the pump that drains the container's pipe.
package fanout
