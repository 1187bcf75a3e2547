package hosts

import "testing"

// FuzzParse: no hosts.toml content may panic the parser, and every host
// it returns has a scheme and a host to send requests to.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"server = \"https://registry-1.docker.io\"\n[host.\"https://mirror:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n",
		"[host.\"http://a\"]\nca = [\"a.crt\", \"b.crt\"]\nclient = [[\"c.cert\", \"c.key\"]]\n[host.\"http://a\".header]\nx = [\"1\", \"2\"]\n",
		"server = 5\n", "[host]\n\"https://x\" = {capabilities = [\"pull\"]}\n", "override_path = true\nserver = \"https://x/custom/path\"\n", "\x00", "[[",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, err := Parse(data, dir, "docker.io")
		if err != nil {
			return
		}
		for _, h := range hosts {
			if h.Scheme != "http" && h.Scheme != "https" {
				t.Fatalf("host with scheme %q accepted", h.Scheme)
			}
			if h.Host == "" {
				t.Fatalf("host without a host accepted: %+v", h)
			}
			_ = h.URL("v2", "library/busybox", "manifests", "latest")
		}
	})
}
