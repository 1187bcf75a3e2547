// Package registrar keeps the names kubelet gives pods and containers, and
// the create requests in progress for them, so that kubelet's retries see
// CRI semantics.
//
// kubelet names a sandbox name_namespace_uid_attempt and a container
// name_sandbox..._attempt, and a name belongs to at most one ID. A Registrar
// (one per kind) holds that mapping: Reserve fails with a *ReservedError
// naming the holder, which the server turns into AlreadyExists.
//
// When RunPodSandbox or CreateContainer takes longer than kubelet's
// timeout, kubelet gives up and later sends the same request again with the
// same name. That retry must receive the object the first call made, or is
// still making: not a "name is reserved" error, and not a second object.
// Creations runs create requests so that this holds: a request whose caller
// gave up keeps running, the retry joins it or picks up its result, and
// results nobody picks up within the keep period are handed to an expire
// callback that deletes them.
//
// A handler is expected to look like this:
//
//	sb, retried, err := creations.Do(ctx, name, func(ctx context.Context) (*Sandbox, error) {
//		if err := names.Reserve(name, id); err != nil {
//			return nil, err // a true duplicate: AlreadyExists naming the holder
//		}
//		return build(ctx, id) // on error, undo everything, Release(name) too
//	})
//	// publish sb (make it visible to List) only now, once a caller has it
//
// Objects should become visible to ListPodSandbox/ListContainers only when
// a caller has received them. Otherwise kubelet could find and adopt an
// object whose request it saw time out, and the expire callback would then
// delete an object kubelet uses.
package registrar
