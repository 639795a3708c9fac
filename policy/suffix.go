package policy

import "github.com/miekg/dns"

// suffixes is a set of domain names matched on label boundaries against lowercased wire-format
// names, without allocating: map lookups keyed by string(bytes) do not copy.
type suffixes struct {
	full map[string]struct{} // wire format, root label included: matches a name's end
	bare map[string]struct{} // without the root label: matches labels in a name's middle
}

func newSuffixes(names []string) suffixes {
	s := suffixes{full: map[string]struct{}{}, bare: map[string]struct{}{}}
	for _, n := range names {
		w := wireName(dns.CanonicalName(n))
		s.full[string(w)] = struct{}{}
		s.bare[string(w[:len(w)-1])] = struct{}{}
	}
	return s
}

func (s suffixes) any() bool { return len(s.full) > 0 }

// under reports whether name is one of the suffixes or below one.
func (s suffixes) under(name []byte) bool {
	if len(s.full) == 0 {
		return false
	}
	for off := 0; off < len(name); off += int(name[off]) + 1 {
		if _, ok := s.full[string(name[off:])]; ok {
			return true
		}
		if name[off] == 0 {
			break
		}
	}
	return false
}

// twice reports search-list junk: name ends with a suffix, and the labels before that end with
// a suffix again (host.prd.example.com.tst.example.com for prd.example.com and tst.example.com).
func (s suffixes) twice(name []byte) bool {
	if len(s.full) == 0 {
		return false
	}
	var offs [128]int // label starts; a name has at most 127 labels
	n := 0
	for off := 0; off < len(name) && name[off] != 0 && n < len(offs); off += int(name[off]) + 1 {
		offs[n] = off
		n++
	}
	for i := 1; i < n; i++ {
		if _, ok := s.full[string(name[offs[i]:])]; !ok {
			continue
		}
		for j := 0; j < i; j++ {
			if _, ok := s.bare[string(name[offs[j]:offs[i]])]; ok {
				return true
			}
		}
	}
	return false
}

// isUnder reports whether name is apex or below it (both wire format, lowercased).
func isUnder(name, apex []byte) bool {
	for off := 0; off < len(name); off += int(name[off]) + 1 {
		if string(name[off:]) == string(apex) {
			return true
		}
		if name[off] == 0 {
			break
		}
	}
	return false
}
