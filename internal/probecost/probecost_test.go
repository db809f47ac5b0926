package probecost

import (
	"testing"
	"time"
)

func TestConnectSYNs(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		want    int
	}{
		{100 * time.Millisecond, 2}, // TCP_SYNCNT cannot be below 1
		{time.Second, 2},
		{1001 * time.Millisecond, 2}, // the SYN at 1 s
		{2 * time.Second, 2},
		{3 * time.Second, 2},
		{3001 * time.Millisecond, 3}, // and at 3 s
		{8 * time.Second, 4},         // 0, 1, 3, 7
		{30 * time.Second, 5},        // 0, 1, 3, 7, 15
		{time.Hour, 1 + MaxConnectSYNRetries},
	} {
		if got := ConnectSYNs(tc.timeout); got != tc.want {
			t.Errorf("ConnectSYNs(%v) = %d, want %d", tc.timeout, got, tc.want)
		}
	}
}
