package policy

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const filesZone = "testdata/zones/files.test.zone"

// filesNeg is files.test's SOA in a negative answer: TTL min(3600, 600).
const filesNeg = "files.test. 600 IN SOA ns.files.test. hostmaster.files.test. 2024010101 7200 3600 1209600 600"

func TestLocalDataFiles(t *testing.T) {
	p := mustNew(t, Config{LocalDataFiles: []string{filesZone}})
	runDecide(t, p, []decideCase{
		// $TTL gives the TTL where a record sets none; relative names are under $ORIGIN.
		{"files.test.", dns.TypeSOA, answered(ReasonLocalData,
			"files.test. 3600 IN SOA ns.files.test. hostmaster.files.test. 2024010101 7200 3600 1209600 600")},
		{"files.test.", dns.TypeNS, answered(ReasonLocalData, "files.test. 3600 IN NS ns.files.test.")},
		{"ns.files.test.", dns.TypeA, answered(ReasonLocalData, "ns.files.test. 3600 IN A 192.0.2.53")},
		{"www.files.test.", dns.TypeA, answered(ReasonLocalData,
			"www.files.test. 300 IN A 192.0.2.1", "www.files.test. 300 IN A 192.0.2.2")},
		{"host.ent.files.test.", dns.TypeAAAA, answered(ReasonLocalData, "host.ent.files.test. 3600 IN AAAA 2001:db8::1")},
		{"mail.files.test.", dns.TypeMX, answered(ReasonLocalData, "mail.files.test. 3600 IN MX 10 mx.example.net.")},
		{"alias.files.test.", dns.TypeA, chased(ReasonLocalData, "www.files.test.", "alias.files.test. 3600 IN CNAME www.files.test.")},
		// A file's zone is static.
		{"www.files.test.", dns.TypeAAAA, nodata(ReasonLocalNoData, filesNeg)},
		{"ent.files.test.", dns.TypeA, nodata(ReasonLocalNoData, filesNeg)},
		{"files.test.", dns.TypeA, nodata(ReasonLocalNoData, filesNeg)},
		{"nope.files.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, filesNeg)},
		{"files.example.", dns.TypeA, passed},
	})
}

func TestLocalDataFilesGlob(t *testing.T) {
	p := mustNew(t, Config{LocalDataFiles: []string{"testdata/glob/*.zone"}})
	runDecide(t, p, []decideCase{
		{"www.one.glob.test.", dns.TypeA, answered(ReasonLocalData, "www.one.glob.test. 300 IN A 192.0.2.11")},
		{"www.two.glob.test.", dns.TypeA, answered(ReasonLocalData, "www.two.glob.test. 300 IN A 192.0.2.12")},
		{"nope.one.glob.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain,
			"one.glob.test. 60 IN SOA ns.one.glob.test. hostmaster.one.glob.test. 1 7200 3600 1209600 60")},
		{"nope.two.glob.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain,
			"two.glob.test. 60 IN SOA ns.two.glob.test. hostmaster.two.glob.test. 1 7200 3600 1209600 60")},
		{"glob.test.", dns.TypeA, passed},
	})
}

// TestLocalDataFilesDeclaredType: local_zones decides the type of a zone a file fills.
func TestLocalDataFilesDeclaredType(t *testing.T) {
	p := mustNew(t, Config{
		LocalZones:     []LocalZone{{Name: "files.test.", Type: "transparent"}},
		LocalDataFiles: []string{filesZone},
	})
	runDecide(t, p, []decideCase{
		{"www.files.test.", dns.TypeA, answered(ReasonLocalData,
			"www.files.test. 300 IN A 192.0.2.1", "www.files.test. 300 IN A 192.0.2.2")},
		{"www.files.test.", dns.TypeAAAA, nodata(ReasonLocalNoData, filesNeg)},
		{"ent.files.test.", dns.TypeA, passed},  // static would say NODATA
		{"nope.files.test.", dns.TypeA, passed}, // static would say NXDOMAIN
	})
}

// TestLocalDataFilesWithLocalData: local_data under a zone file's apex belongs to that zone, as
// it would to a declared zone; neither the file's records nor the local data may get lost
// because local_data happens to be read before the files.
func TestLocalDataFilesWithLocalData(t *testing.T) {
	p := mustNew(t, Config{
		// In this order the first line makes a transparent zone www.files.test. (hiding the file's
		// www A records) and the second one files.test. (which the file's zone then replaces).
		LocalData: []string{
			`www.files.test. 300 IN TXT "from local data"`,
			`files.test. 300 IN TXT "from local data"`,
		},
		LocalDataFiles: []string{filesZone},
	})
	runDecide(t, p, []decideCase{
		{"files.test.", dns.TypeTXT, answered(ReasonLocalData, `files.test. 300 IN TXT "from local data"`)},
		{"www.files.test.", dns.TypeTXT, answered(ReasonLocalData, `www.files.test. 300 IN TXT "from local data"`)},
		{"www.files.test.", dns.TypeA, answered(ReasonLocalData,
			"www.files.test. 300 IN A 192.0.2.1", "www.files.test. 300 IN A 192.0.2.2")},
		{"nope.files.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, filesNeg)},
	})
}

func TestLocalDataFilesErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  []string // substrings of the error
	}{
		{"syntax error names file and line", []string{"testdata/bad/syntax.zone"},
			[]string{"testdata/bad/syntax.zone", "192.0.2.300", "line: 5:"}},
		{"no SOA", []string{"testdata/bad/nosoa.zone"},
			[]string{"testdata/bad/nosoa.zone", "no SOA"}},
		{"record outside the apex", []string{"testdata/bad/outside.zone"},
			[]string{"testdata/bad/outside.zone", "www.elsewhere.test.", "outside the zone outside.test."}},
		// An A without an address would be served with an empty RDATA, which no client can parse.
		{"record without rdata", []string{"testdata/bad/nordata.zone"},
			[]string{"testdata/bad/nordata.zone", "www.nordata.test."}},
		{"bad file among good ones", []string{"testdata/glob/*.zone", "testdata/bad/nosoa.zone"},
			[]string{"testdata/bad/nosoa.zone"}},
		{"bad glob", []string{"testdata/[bad"}, []string{`"testdata/[bad"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{LocalDataFiles: tc.files})
			if err == nil {
				t.Fatalf("New(local_data_files %q) error = nil, want an error containing %q", tc.files, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New(local_data_files %q) error = %q, want it to contain %q", tc.files, err, w)
				}
			}
		})
	}
}
