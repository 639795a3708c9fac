package field

import (
	"errors"
	"testing"
)

func TestUnderAndEach(t *testing.T) {
	err := errors.Join(Errorf("protocol", "%q is not one of udp, tcp", "quic"), errors.New("plain"), Errorf("[2].zone", "bad"))
	var got []string
	Each(Under("forward[1]", err), func(e *Error) { got = append(got, e.Error()) })
	want := []string{`forward[1].protocol: "quic" is not one of udp, tcp`, "forward[1]: plain", "forward[1][2].zone: bad"}
	if len(got) != len(want) {
		t.Fatalf("Each(Under) = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Each(Under)[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	Each(nil, func(*Error) { t.Error("Each(nil) called fn") })
}
