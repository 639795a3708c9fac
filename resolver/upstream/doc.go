// Package upstream is the resolver's upstream side: forward zones and their pools, the choice
// of upstream by health and RTT, the exchange with retransmission on each query's own timer
// (new source ports, TCP on truncation), RFC 5452 matching, and scrubbing of what an upstream
// may not say. It knows nothing of the server, the cache or the policy: the resolver hands it
// questions and takes answers.
package upstream
