package fabric

// hysteresis turns a series of pass/fail results into a state that changes only after rise
// passes in a row (to up) or fall failures in a row (to down), so that one lost packet flaps
// neither a route nor a failover. The health checker and the failover controller share it.
type hysteresis struct {
	rise, fall int
	up         bool
	streak     int // consecutive results that disagree with up
}

// observe takes one result and reports the state after it, and whether it just changed.
func (h *hysteresis) observe(ok bool) (up, flipped bool) {
	if ok == h.up {
		h.streak = 0
		return h.up, false
	}
	h.streak++
	if h.streak >= h.need() {
		h.up, h.streak = ok, 0
		return h.up, true
	}
	return h.up, false
}

// need is how many disagreeing results in a row change the state from where it is.
func (h *hysteresis) need() int {
	if h.up {
		return h.fall
	}
	return h.rise
}
