package policy_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// question builds what Decide looks at: the lowercased name in wire format.
func question(name string, qtype uint16) *policy.Question {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		panic(err)
	}
	return &policy.Question{Name: buf[:n], Type: qtype, Class: dns.ClassINET}
}

// show prints a verdict the way a client would see it.
func show(v policy.Verdict) {
	fmt.Print(v.Action, " ", v.Reason)
	if v.Msg != nil {
		fmt.Print(" ", dns.RcodeToString[v.Msg.Rcode])
	}
	if v.Target != "" {
		fmt.Print(" -> ", v.Target)
	}
	fmt.Println()
	if v.Msg == nil {
		return
	}
	for _, rr := range v.Msg.Answer {
		fmt.Println("  answer:   ", strings.ReplaceAll(rr.String(), "\t", " "))
	}
	for _, rr := range v.Msg.Ns {
		fmt.Println("  authority:", strings.ReplaceAll(rr.String(), "\t", " "))
	}
}

func ExampleNew() {
	p, err := policy.New(policy.Config{
		LocalZones: []policy.LocalZone{{Name: "home.arpa.", Type: "static"}},
		LocalData: []string{
			"home.arpa. 3600 IN SOA ns.home.arpa. hostmaster.home.arpa. 1 7200 3600 1209600 300",
			"nas.home.arpa. 300 IN A 192.168.1.10",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"nas.home.arpa.", "NAS.home.arpa.", "printer.home.arpa.", "www.example.com."} {
		fmt.Print(name, ": ")
		show(p.Decide(question(name, dns.TypeA)))
	}
	fmt.Print("nas.home.arpa. AAAA: ")
	show(p.Decide(question("nas.home.arpa.", dns.TypeAAAA)))
	// Output:
	// nas.home.arpa.: answer local_data NOERROR
	//   answer:    nas.home.arpa. 300 IN A 192.168.1.10
	// NAS.home.arpa.: answer local_data NOERROR
	//   answer:    nas.home.arpa. 300 IN A 192.168.1.10
	// printer.home.arpa.: answer local_nxdomain NXDOMAIN
	//   authority: home.arpa. 300 IN SOA ns.home.arpa. hostmaster.home.arpa. 1 7200 3600 1209600 300
	// www.example.com.: pass none
	// nas.home.arpa. AAAA: answer local_nodata NOERROR
	//   authority: home.arpa. 300 IN SOA ns.home.arpa. hostmaster.home.arpa. 1 7200 3600 1209600 300
}

func ExampleSynthIP() {
	p, err := policy.New(policy.Config{SynthIP: policy.SynthIP{Domain: "ip.example.com", TTL: time.Hour}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
	}{
		{"192.0.2.1.ip.example.com.", dns.TypeA},
		{"2001-db8--1.ip.example.com.", dns.TypeAAAA},
		{"192.0.2.1.ip.example.com.", dns.TypeAAAA},
		{"192.0.2.01.ip.example.com.", dns.TypeA},
	} {
		fmt.Print(tc.name, " ", dns.TypeToString[tc.qtype], ": ")
		show(p.Decide(question(tc.name, tc.qtype)))
	}
	// Output:
	// 192.0.2.1.ip.example.com. A: answer synthesize_ip NOERROR
	//   answer:    192.0.2.1.ip.example.com. 3600 IN A 192.0.2.1
	// 2001-db8--1.ip.example.com. AAAA: answer synthesize_ip NOERROR
	//   answer:    2001-db8--1.ip.example.com. 3600 IN AAAA 2001:db8::1
	// 192.0.2.1.ip.example.com. AAAA: answer synthesize_ip NOERROR
	// 192.0.2.01.ip.example.com. A: answer synthesize_ip NXDOMAIN
}
