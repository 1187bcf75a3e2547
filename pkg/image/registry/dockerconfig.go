package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxDockerConfig bounds a credentials file: it holds a few entries.
const maxDockerConfig = 1 << 20

// CredentialsFromFile returns the credentials for registry host (a
// reference's domain, "docker.io" for Docker Hub) from a file in the
// format of Docker's config.json and kubelet's image pull secrets
// (.dockerconfigjson): {"auths": {"<host>": {"auth": "<base64 user:pass>"}}},
// with "username"/"password", "identitytoken" and "registrytoken" also
// read. Keys may carry a scheme and a path ("https://index.docker.io/v1/").
// A host without an entry gets empty credentials and no error.
func CredentialsFromFile(path, host string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("registry credentials: %w", err)
	}
	defer f.Close()
	var cfg struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
			RegistryToken string `json:"registrytoken"`
		} `json:"auths"`
	}
	// A larger file is cut and fails to decode.
	dec := json.NewDecoder(io.LimitReader(f, maxDockerConfig))
	if err := dec.Decode(&cfg); err != nil {
		return Credentials{}, fmt.Errorf("registry credentials in %s: %w", path, err)
	}
	want := credentialHost(host)
	for key, a := range cfg.Auths {
		if credentialHost(key) != want {
			continue
		}
		return Credentials{Username: a.Username, Password: a.Password, Auth: a.Auth, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}, nil
	}
	return Credentials{}, nil
}

// credentialHost reduces a config key or a reference domain to the host
// (and port) it names; Docker Hub's several names become one.
func credentialHost(s string) string {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return s
}
