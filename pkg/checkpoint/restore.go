package checkpoint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CRIUConfigAnnotation is the spec annotation that names, to runc, a CRIU
// configuration file of the container's own; CRIU lets that file's
// settings override the ones runc sends it. Without the annotation runc
// names runcCRIUConfig.
const CRIUConfigAnnotation = "org.criu.config"

// runcCRIUConfig is the operator's CRIU configuration for runc, which the
// annotation would otherwise hide; a restore config carries it over.
var runcCRIUConfig = "/etc/criu/runc.conf"

// restoreConfigName is the restore config's file, in the checkpoint's
// directory (the container's bundle keeps it while the container exists).
const restoreConfigName = "criu.conf"

// WriteRestoreConfig writes the CRIU configuration of a restore into dir
// and returns its path, for CRIUConfigAnnotation. It sets CRIU's cgroup
// root to cgroupDir (the new container's cgroup, below the cgroup mount),
// so the restored tasks land there and not in the checkpointed
// container's cgroup, which CRIU's images name.
//
// runc restore only tells CRIU the new cgroup on cgroup v1; on v2 it
// does from runc 1.2 on (runc commit 3438ef30b). With runc 1.1 (Debian
// 12's) CRIU put the restored tasks back into the original's cgroup
// (still there: a checkpoint leaves it running): the new container's
// systemd scope, which only held CRIU, emptied and systemd removed it,
// and every later runc kill, exec or delete failed on the missing scope.
// A cgroup namespace the tasks had is rooted at cgroupDir too (CRIU
// rewrites its prefix with the root).
func WriteRestoreConfig(dir, cgroupDir string) (string, error) {
	if !filepath.IsAbs(cgroupDir) || strings.ContainsAny(cgroupDir, " \t\n\"'#") {
		return "", fmt.Errorf("restore config: cgroup %q cannot be a CRIU cgroup root", cgroupDir)
	}
	var b bytes.Buffer
	if own, err := os.ReadFile(runcCRIUConfig); err == nil {
		b.Write(own)
		if len(own) > 0 && own[len(own)-1] != '\n' {
			b.WriteByte('\n')
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("restore config: %w", err)
	}
	// The last setting wins: ours, whatever the operator's file said.
	fmt.Fprintf(&b, "# cri-runtimed: the restored tasks go to the new container's cgroup\ncgroup-root %s\n", cgroupDir)
	path := filepath.Join(dir, restoreConfigName)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("restore config: %w", err)
	}
	return path, nil
}
