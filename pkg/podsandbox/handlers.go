package podsandbox

// handlerSet is the runtime handlers new pods may name, and the one a pod
// naming none gets. Reload replaces it whole; a running pod keeps the
// Handler it started with (its copy is in the Pod).
type handlerSet struct {
	byName map[string]Handler
	def    string
}

// newHandlerSet copies handlers, adding the cgroup driver's arguments.
func (c *Controller) newHandlerSet(handlers map[string]Handler, def string) *handlerSet {
	hs := &handlerSet{byName: make(map[string]Handler, len(handlers)), def: def}
	for name, h := range handlers {
		h.Args = c.opts.Cgroups.RuntimeArgs()
		hs.byName[name] = h
	}
	return hs
}

// SetHandlers replaces the runtime handlers pods started from now on may
// name (SIGHUP). Pods running, and pods being created, keep theirs.
func (c *Controller) SetHandlers(handlers map[string]Handler, defaultHandler string) {
	c.handlers.Store(c.newHandlerSet(handlers, defaultHandler))
}

// handler resolves a pod's handler name ("" for the default).
func (c *Controller) handler(name string) (string, Handler, bool) {
	hs := c.handlers.Load()
	if name == "" {
		name = hs.def
	}
	h, ok := hs.byName[name]
	return name, h, ok
}
