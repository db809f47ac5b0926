// Package probecost says how many packets one probe may send, for the two
// places that must agree on it: the agent's pps limiter, which charges each
// probe before it goes, and the controller's budget check, which refuses a
// campaign whose probes would exceed budget.per_target_pps. Were the two
// written apart, a campaign the controller accepts could be throttled by
// every agent.
package probecost

import "time"

// MaxConnectSYNRetries bounds the SYN retransmissions of a connect probe
// (the kernel's default tcp_syn_retries is 6).
const MaxConnectSYNRetries = 6

// ConnectSYNRetries is how many times the kernel may retransmit a connect
// probe's SYN within timeout. connect(2) leaves retransmission to the
// kernel: SYNs go at 0, 1, 3, 7, 15 and 31 s, the RTO doubling from 1 s,
// until the probe's timeout closes the socket. The agent caps the
// retransmissions at this count with TCP_SYNCNT, which cannot be below 1,
// so even a probe with a timeout under 1 s may send two SYNs.
func ConnectSYNRetries(timeout time.Duration) int {
	n := 0
	for at := time.Second; at < timeout && n < MaxConnectSYNRetries; at = 2*at + time.Second {
		n++
	}
	return max(n, 1)
}

// ConnectSYNs is every SYN one connect probe may send: the first and its
// retransmissions.
func ConnectSYNs(timeout time.Duration) int { return 1 + ConnectSYNRetries(timeout) }
