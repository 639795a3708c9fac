package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the config parser as the YAML file: whatever it is,
// the parser returns a config or errors, never panics, and a config it accepts has a cache
// config the cache takes.
func FuzzParseConfig(f *testing.F) {
	// The full example here; testdata/fuzz/FuzzParseConfig holds other sections, slightly broken
	// files and the regressions.
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("forward:\n  - zone: .\n    upstreams: [192.0.2.1]\n"))
	f.Add([]byte("local_data_files: [testdata/example.test.zone, \"testdata/zones/*.zone\"]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		// local_data_files are read: keep the fuzzer to this directory's files, off devices and
		// whole-tree globs that would make one input take minutes.
		for _, s := range []string{"/dev", "/proc", "/sys", "*/", "/*", "**"} {
			if bytes.Contains(data, []byte(s)) {
				t.Skip("reads outside testdata")
			}
		}
		cfg, err := parseConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		if err := cfg.Cache.Validate(); err != nil {
			t.Fatalf("parseConfig accepted a cache config the cache rejects: %v\n%s", err, data)
		}
	})
}
