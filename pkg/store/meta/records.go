package meta

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketSandboxes  = []byte("sandboxes")
	bucketContainers = []byte("containers")
)

// SandboxState is the persisted lifecycle state of a pod sandbox.
type SandboxState string

const (
	// SandboxCreating is written before any resource of the pod exists; a
	// record still in this state after a crash is cleaned up at start.
	SandboxCreating SandboxState = "creating"
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
)

// Sandbox is the record of one pod sandbox.
type Sandbox struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Config is the CRI PodSandboxConfig as protobuf bytes.
	Config         []byte       `json:"config"`
	RuntimeHandler string       `json:"runtimeHandler,omitempty"`
	State          SandboxState `json:"state"`
	CreatedAt      time.Time    `json:"createdAt"`
	NetNSPath      string       `json:"netnsPath,omitempty"`
	Pid            int          `json:"pid,omitempty"`
	// CgroupParent is the cgroup the pod's processes live under.
	CgroupParent string `json:"cgroupParent,omitempty"`
	// IPs are the pod's addresses, primary first.
	IPs []string `json:"ips,omitempty"`
	// NetworkDown records a successful CNI DEL: the pod's network is
	// released and the rest of its teardown does not call the plugins
	// again.
	NetworkDown bool `json:"networkDown,omitempty"`
	// Released records that a stopped pod's shim, network namespace pin
	// and mounts are gone: only the record and the pod's directory wait
	// for its removal.
	Released bool `json:"released,omitempty"`
	// Extra holds controller data that is not indexed.
	Extra map[string]string `json:"extra,omitempty"`
	// Corrupt marks a record ListSandboxes could not decode: only ID is
	// set. It is never stored.
	Corrupt bool `json:"-"`
}

// ContainerState is the persisted lifecycle state of a container.
type ContainerState string

const (
	ContainerCreating ContainerState = "creating"
	ContainerCreated  ContainerState = "created"
	ContainerRunning  ContainerState = "running"
	ContainerExited   ContainerState = "exited"
	ContainerUnknown  ContainerState = "unknown"
)

// Container is the record of one container.
type Container struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandboxID"`
	Name      string `json:"name"`
	// Config is the CRI ContainerConfig as protobuf bytes.
	Config []byte `json:"config"`
	// ImageID is the image's config digest; ImageRef what kubelet asked
	// for, resolved to a repo digest where one exists.
	ImageID     string         `json:"imageID"`
	ImageRef    string         `json:"imageRef"`
	ImageName   string         `json:"imageName,omitempty"`
	SnapshotKey string         `json:"snapshotKey,omitempty"`
	LogPath     string         `json:"logPath,omitempty"`
	State       ContainerState `json:"state"`
	CreatedAt   time.Time      `json:"createdAt"`
	StartedAt   time.Time      `json:"startedAt,omitzero"`
	FinishedAt  time.Time      `json:"finishedAt,omitzero"`
	Pid         int            `json:"pid,omitempty"`
	ExitCode    int32          `json:"exitCode"`
	Reason      string         `json:"reason,omitempty"`
	Message     string         `json:"message,omitempty"`
	// Resources is the OCI LinuxResources JSON last applied, so updates
	// survive restarts of the daemon.
	Resources []byte `json:"resources,omitempty"`
	// StopSignal is the signal StopContainer sends first ("SIGTERM"):
	// the config's stop_signal, else the image's StopSignal, else SIGTERM.
	// Empty in records older than the field: the image decides.
	StopSignal string `json:"stopSignal,omitempty"`
	// ImageVolumes are the IDs of the images mounted as volumes
	// (Mount.image), in the order of those mounts; the n-th is mounted
	// from the read-only snapshot "<ID>-imagevolume-<n>". Recorded before
	// any is mounted, so removal and recovery find them all.
	ImageVolumes []string `json:"imageVolumes,omitempty"`
	// Corrupt marks a record ListContainers could not decode: only ID is
	// set. It is never stored.
	Corrupt bool `json:"-"`
}

func (db *DB) initRecords() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSandboxes, bucketContainers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutSandbox creates or replaces a sandbox record.
func (db *DB) PutSandbox(s Sandbox) error { return putJSON(db, bucketSandboxes, s.ID, s) }

// DeleteSandbox removes a sandbox record; missing is not an error.
func (db *DB) DeleteSandbox(id string) error { return deleteKey(db, bucketSandboxes, id) }

// ListSandboxes returns every sandbox record; one that cannot be decoded
// is returned with only its ID and Corrupt set, so that one bad record
// does not hide the others (the daemon must start).
func (db *DB) ListSandboxes() ([]Sandbox, error) {
	return listJSON(db, bucketSandboxes, func(id string) Sandbox { return Sandbox{ID: id, Corrupt: true} })
}

// PutContainer creates or replaces a container record.
func (db *DB) PutContainer(c Container) error { return putJSON(db, bucketContainers, c.ID, c) }

// DeleteContainer removes a container record; missing is not an error.
func (db *DB) DeleteContainer(id string) error { return deleteKey(db, bucketContainers, id) }

// ListContainers returns every container record; one that cannot be
// decoded is returned with only its ID and Corrupt set.
func (db *DB) ListContainers() ([]Container, error) {
	return listJSON(db, bucketContainers, func(id string) Container { return Container{ID: id, Corrupt: true} })
}

func putJSON(db *DB, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", bucket, key, err)
	}
	return db.records.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), b)
	})
}

func deleteKey(db *DB, bucket []byte, key string) error {
	return db.records.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Delete([]byte(key))
	})
}

// listJSON decodes every record of bucket; corrupt makes the stand-in of
// one that does not decode.
func listJSON[T any](db *DB, bucket []byte, corrupt func(key string) T) ([]T, error) {
	var out []T
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var t T
			if err := json.Unmarshal(v, &t); err != nil {
				t = corrupt(string(k))
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}
