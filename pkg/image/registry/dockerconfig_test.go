package registry

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCredentialsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"auths": {
		"https://index.docker.io/v1/": {"auth": "aHViOnB3"},
		"127.0.0.1:5000": {"username": "u", "password": "p"},
		"http://mirror.internal/v2/": {"identitytoken": "refresh"},
		"tokens.example": {"registrytoken": "bearer"}
	}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want Credentials
	}{
		{"docker.io", Credentials{Auth: "aHViOnB3"}},
		{"127.0.0.1:5000", Credentials{Username: "u", Password: "p"}},
		{"mirror.internal", Credentials{IdentityToken: "refresh"}},
		{"tokens.example", Credentials{RegistryToken: "bearer"}},
		{"127.0.0.1", Credentials{}},
		{"other.example", Credentials{}},
	} {
		got, err := CredentialsFromFile(path, tc.host)
		if err != nil || got != tc.want {
			t.Errorf("CredentialsFromFile(%s) = %+v, %v; want %+v", tc.host, got, err, tc.want)
		}
	}
	if _, err := CredentialsFromFile(filepath.Join(t.TempDir(), "missing"), "docker.io"); err == nil {
		t.Error("a missing file is not an error")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"auths": `), 0o600)
	if _, err := CredentialsFromFile(bad, "docker.io"); err == nil {
		t.Error("a malformed file is not an error")
	}
}
