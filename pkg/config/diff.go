package config

import (
	"reflect"
	"sort"

	toml "github.com/pelletier/go-toml/v2"
)

// Changed lists the keys, dotted as in the file ("image.max_concurrent_downloads",
// "runtime.handlers.crun.binary"), whose values differ between a and b,
// sorted. A table present on one side only counts as each of its keys.
func Changed(a, b *Config) ([]string, error) {
	fa, err := flatten(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(b)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, va := range fa {
		if vb, ok := fb[k]; !ok || !reflect.DeepEqual(va, vb) {
			keys = append(keys, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// flatten maps every leaf key of c, as the TOML file names it, to its
// value; it goes through the TOML encoding so that the names are the
// file's.
func flatten(c *Config) (map[string]any, error) {
	b, err := toml.Marshal(c)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := toml.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			if sub, ok := v.(map[string]any); ok {
				walk(key, sub)
				continue
			}
			out[key] = v
		}
	}
	walk("", tree)
	return out, nil
}
