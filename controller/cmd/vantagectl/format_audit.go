package main

import (
	"fmt"
	"io"
	"strconv"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// audit renders `audit`.
func (p printer) audit(w io.Writer, es []*vantagev1.AuditEntry) error {
	if len(es) == 0 {
		_, err := fmt.Fprintln(w, "No audit entries.")
		return err
	}
	t := newTable(w, "ID", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL")
	for _, e := range es {
		t.row(strconv.FormatInt(e.GetId(), 10), p.clock(e.GetAt()), e.GetActor(), e.GetAction(), e.GetSubject(), e.GetDetail())
	}
	return t.flush()
}
