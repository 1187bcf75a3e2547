package hosts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"k8s.io/klog/v2"
)

const (
	hostsFile  = "hosts.toml"
	defaultDir = "_default"

	dockerDomain = "docker.io"
	dockerServer = "registry-1.docker.io"
)

// Load returns the hosts to try, in order, for the registry domain (e.g.
// "docker.io" or "127.0.0.1:5000") according to the certs.d directory dir.
// An empty dir, or one with no entry for domain and no _default, yields the
// defaults. A malformed hosts.toml is an error naming the file.
func Load(dir, domain string) ([]Host, error) {
	if domain == "" {
		return nil, errors.New("registry hosts: empty registry domain")
	}
	if dir == "" {
		return Default(domain), nil
	}
	for _, name := range dirNames(domain) {
		d := filepath.Join(dir, name)
		fi, err := os.Stat(d)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("registry hosts for %s: %w", domain, err)
		}
		if !fi.IsDir() {
			continue
		}
		return loadDir(d, domain)
	}
	f := filepath.Join(dir, defaultDir, hostsFile)
	data, err := os.ReadFile(f)
	switch {
	case err == nil:
		return parseFile(f, data, domain)
	case errors.Is(err, os.ErrNotExist):
		return Default(domain), nil
	default:
		return nil, fmt.Errorf("registry hosts for %s: %w", domain, err)
	}
}

// dirNames lists the directory names that may hold a domain's configuration.
// "host_port_" exists because ':' is not allowed in Windows paths; containerd
// accepts it everywhere, and so do we.
func dirNames(domain string) []string {
	names := []string{domain}
	if i := strings.LastIndex(domain, ":"); i > 0 && !strings.HasSuffix(domain, "]") {
		names = append(names, domain[:i]+"_"+domain[i+1:]+"_")
	}
	return names
}

func loadDir(d, domain string) ([]Host, error) {
	f := filepath.Join(d, hostsFile)
	data, err := os.ReadFile(f)
	if err == nil {
		return parseFile(f, data, domain)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("registry hosts for %s: %w", domain, err)
	}
	return legacyCerts(d, domain)
}

func parseFile(f string, data []byte, domain string) ([]Host, error) {
	hs, err := Parse(data, filepath.Dir(f), domain)
	if err != nil {
		return nil, fmt.Errorf("registry hosts file %s: %w", f, err)
	}
	klog.V(4).InfoS("Loaded registry hosts", "file", f, "domain", domain, "hosts", len(hs))
	return hs, nil
}

// Default returns the hosts used when nothing is configured for domain:
// https to the registry itself and, for loopback registries, plain http as a
// fallback, as containerd does.
func Default(domain string) []Host {
	server := domain
	if domain == dockerDomain {
		server = dockerServer
	}
	hs := []Host{{
		Scheme:       "https",
		Host:         server,
		Path:         "/v2",
		Capabilities: CapabilityPull | CapabilityResolve | CapabilityPush,
		TLS:          &tls.Config{MinVersion: tls.VersionTLS12},
		Header:       http.Header{},
		Server:       true,
	}}
	if isLocalhost(domain) {
		h := hs[0]
		h.Scheme, h.TLS, h.Header = "http", nil, http.Header{}
		hs = append(hs, h)
	}
	return hs
}

// legacyCerts implements docker's certs.d layout: *.crt files are CAs and
// x.cert/x.key pairs are client certificates, applied to the default hosts.
func legacyCerts(d, domain string) ([]Host, error) {
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("registry hosts for %s: %w", domain, err)
	}
	var cas []string
	var clients [][2]string
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(d, name)
		switch {
		case strings.HasSuffix(name, ".crt"):
			cas = append(cas, p)
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			if _, err := os.Stat(key); err != nil {
				return nil, fmt.Errorf("registry hosts for %s: client certificate %s has no matching key %s: %w", domain, p, key, err)
			}
			clients = append(clients, [2]string{p, key})
		}
	}
	hs := Default(domain)
	if len(cas) == 0 && len(clients) == 0 {
		return hs, nil
	}
	cfg, err := buildTLS(false, cas, clients)
	if err != nil {
		return nil, fmt.Errorf("registry hosts for %s in %s: %w", domain, d, err)
	}
	hs[0].TLS = cfg
	return hs, nil
}

// entry is the per-host configuration common to the server (top level) and
// each [host."..."] table.
type entry struct {
	caps         Capabilities
	capsSet      bool
	skipVerify   bool
	ca           []string
	client       [][2]string
	header       http.Header
	overridePath bool
}

var knownKeys = map[string]bool{
	"server": true, "host": true, "capabilities": true, "skip_verify": true,
	"ca": true, "client": true, "header": true, "override_path": true,
}

// Parse parses the contents of a hosts.toml for domain. fileDir is the
// directory of the file, against which relative certificate paths resolve.
// The result lists the [host] entries in file order followed by the server.
func Parse(data []byte, fileDir, domain string) ([]Host, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		return nil, err
	}
	for k := range doc {
		if !knownKeys[k] {
			klog.V(2).InfoS("Ignoring unknown key in registry hosts file", "key", k, "dir", fileDir)
		}
	}

	var hs []Host
	if raw, ok := doc["host"]; ok {
		table, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("host: expected a table, got %T", raw)
		}
		for _, name := range hostOrder(data, table) {
			sub, ok := table[name].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("host %q: expected a table, got %T", name, table[name])
			}
			for k := range sub {
				if k == "server" || k == "host" || !knownKeys[k] {
					klog.V(2).InfoS("Ignoring unknown key in registry hosts file", "host", name, "key", k, "dir", fileDir)
				}
			}
			e, err := parseEntry(sub, fileDir)
			if err != nil {
				return nil, fmt.Errorf("host %q: %w", name, err)
			}
			if !e.capsSet {
				e.caps = CapabilityPull | CapabilityResolve
			}
			h, err := makeHost(name, e)
			if err != nil {
				return nil, fmt.Errorf("host %q: %w", name, err)
			}
			hs = append(hs, h)
		}
	}

	server := "https://" + domain
	if domain == dockerDomain {
		server = "https://" + dockerServer
	}
	if raw, ok := doc["server"]; ok {
		s, ok := raw.(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("server: expected a non-empty string, got %v", raw)
		}
		server = s
	}
	e, err := parseEntry(doc, fileDir)
	if err != nil {
		return nil, err
	}
	if !e.capsSet {
		e.caps = CapabilityPull | CapabilityResolve | CapabilityPush
	}
	h, err := makeHost(server, e)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	h.Server = true
	hs = append(hs, h)
	return hs, nil
}

func parseEntry(m map[string]any, fileDir string) (entry, error) {
	e := entry{header: http.Header{}}
	if v, ok := m["capabilities"]; ok {
		list, err := stringList(v)
		if err != nil {
			return e, fmt.Errorf("capabilities: %w", err)
		}
		e.capsSet = true
		for _, c := range list {
			switch c {
			case "pull":
				e.caps |= CapabilityPull
			case "resolve":
				e.caps |= CapabilityResolve
			case "push":
				e.caps |= CapabilityPush
			default:
				return e, fmt.Errorf("capabilities: unknown capability %q (want pull, resolve or push)", c)
			}
		}
	}
	if v, ok := m["skip_verify"]; ok {
		b, ok := v.(bool)
		if !ok {
			return e, fmt.Errorf("skip_verify: expected a boolean, got %T", v)
		}
		e.skipVerify = b
	}
	if v, ok := m["override_path"]; ok {
		b, ok := v.(bool)
		if !ok {
			return e, fmt.Errorf("override_path: expected a boolean, got %T", v)
		}
		e.overridePath = b
	}
	if v, ok := m["ca"]; ok {
		list, err := stringList(v)
		if err != nil {
			return e, fmt.Errorf("ca: %w", err)
		}
		for _, p := range list {
			e.ca = append(e.ca, resolvePath(fileDir, p))
		}
	}
	if v, ok := m["client"]; ok {
		pairs, err := clientPairs(v)
		if err != nil {
			return e, fmt.Errorf("client: %w", err)
		}
		for _, p := range pairs {
			p[0] = resolvePath(fileDir, p[0])
			if p[1] != "" {
				p[1] = resolvePath(fileDir, p[1])
			}
			e.client = append(e.client, p)
		}
	}
	if v, ok := m["header"]; ok {
		hm, ok := v.(map[string]any)
		if !ok {
			return e, fmt.Errorf("header: expected a table, got %T", v)
		}
		for k, hv := range hm {
			vals, err := stringList(hv)
			if err != nil {
				return e, fmt.Errorf("header %q: %w", k, err)
			}
			for _, s := range vals {
				e.header.Add(k, s)
			}
		}
	}
	return e, nil
}

func makeHost(raw string, e entry) (Host, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Host{}, fmt.Errorf("invalid URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Host{}, fmt.Errorf("invalid URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return Host{}, fmt.Errorf("invalid URL %q: no host", raw)
	}
	p := u.Path
	switch {
	case e.overridePath:
		// Used verbatim: the registry's API root is not at /v2.
	case p == "" || p == "/":
		p = "/v2"
	default:
		p = path.Clean(p)
		if !strings.HasSuffix(p, "/v2") {
			p += "/v2"
		}
	}
	h := Host{
		Scheme:       u.Scheme,
		Host:         u.Host,
		Path:         p,
		Capabilities: e.caps,
		Header:       e.header,
		OverridePath: e.overridePath,
	}
	if u.Scheme == "https" {
		h.TLS, err = buildTLS(e.skipVerify, e.ca, e.client)
		if err != nil {
			return Host{}, err
		}
	}
	return h, nil
}

func buildTLS(skipVerify bool, cas []string, clients [][2]string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // skip_verify is an explicit operator choice.
	if len(cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("ca: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca: %s holds no PEM certificate", f)
			}
		}
		cfg.RootCAs = pool
	}
	for _, p := range clients {
		key := p[1]
		if key == "" {
			// containerd's single-file form: certificate and key together.
			key = p[0]
		}
		cert, err := tls.LoadX509KeyPair(p[0], key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s (key %s): %w", p[0], key, err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

// stringList accepts a string or an array of strings.
func stringList(v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		return []string{t}, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("expected a string or a list of strings, found %T in the list", x)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("expected a string or a list of strings, got %T", v)
	}
}

// clientPairs accepts every form containerd does: "file" (cert and key in
// one file), ["cert", "key"], a list of single files, and a list of pairs.
func clientPairs(v any) ([][2]string, error) {
	switch t := v.(type) {
	case string:
		return [][2]string{{t, ""}}, nil
	case []any:
		if len(t) == 2 {
			a, aok := t[0].(string)
			b, bok := t[1].(string)
			if aok && bok && strings.HasSuffix(b, ".key") {
				return [][2]string{{a, b}}, nil
			}
		}
		var out [][2]string
		for _, x := range t {
			switch xt := x.(type) {
			case string:
				out = append(out, [2]string{xt, ""})
			case []any:
				list, err := stringList(xt)
				if err != nil {
					return nil, err
				}
				switch len(list) {
				case 1:
					out = append(out, [2]string{list[0], ""})
				case 2:
					out = append(out, [2]string{list[0], list[1]})
				default:
					return nil, fmt.Errorf("expected [cert, key], got %d elements", len(list))
				}
			default:
				return nil, fmt.Errorf("expected a path or a [cert, key] pair, got %T", x)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("expected a path, a [cert, key] pair or a list of pairs, got %T", v)
	}
}

// hostOrder returns the keys of the host table in the order they appear in
// the file: the decoded map has no order, and containerd tries mirrors in
// file order. Keys the scan misses (should not happen) come last, sorted.
func hostOrder(data []byte, table map[string]any) []string {
	var order []string
	seen := map[string]bool{}
	add := func(k string) {
		if _, ok := table[k]; ok && !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	keyParts := func(it unstable.Iterator) []string {
		var parts []string
		for it.Next() {
			parts = append(parts, string(it.Node().Data))
		}
		return parts
	}

	var p unstable.Parser
	p.Reset(data)
	var current []string
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			current = keyParts(n.Key())
			if len(current) >= 2 && current[0] == "host" {
				add(current[1])
			}
		case unstable.KeyValue:
			full := append(append([]string{}, current...), keyParts(n.Key())...)
			switch {
			case len(full) >= 2 && full[0] == "host":
				add(full[1])
			case len(full) == 1 && full[0] == "host" && n.Value().Kind == unstable.InlineTable:
				it := n.Value().Children()
				for it.Next() {
					if kv := it.Node(); kv.Kind == unstable.KeyValue {
						if parts := keyParts(kv.Key()); len(parts) > 0 {
							add(parts[0])
						}
					}
				}
			}
		}
	}
	var rest []string
	for k := range table {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(order, rest...)
}
