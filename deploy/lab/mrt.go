package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MRT (RFC 6396) as BIRD writes it: TABLE_DUMP_V2 records, a
// PEER_INDEX_TABLE then one RIB record per prefix, for each table dumped.
const (
	mrtHeaderLen      = 12
	mrtTableDumpV2    = 13
	mrtPeerIndexTable = 1
	mrtRIBIPv4Unicast = 2
	mrtRIBIPv6Unicast = 4
)

// mrtDumpTimeout bounds how long DumpMRT waits for BIRD to finish the file.
const mrtDumpTimeout = 10 * time.Second

// MRTSummary counts the records of an MRT TABLE_DUMP_V2 file.
type MRTSummary struct {
	Records    int // every record
	PeerTables int // PEER_INDEX_TABLE records (one per table dumped)
	RIB4, RIB6 int // RIB_IPV4_UNICAST, RIB_IPV6_UNICAST records (one per prefix)
}

// DumpMRT has the node's BIRD dump its routing tables (every table: IPv4
// and IPv6) to path as an MRT TABLE_DUMP_V2 file ("mrt dump table" of BIRD
// 2.0.12), waits until the file is complete and checks it.
func (l *Lab) DumpMRT(node, path string) error {
	if err := l.needBGP("DumpMRT"); err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("mrt dump path %q: %w", path, err)
	}
	// BIRD takes the name as a string literal and as a strftime pattern.
	if strings.ContainsAny(abs, "\"%\n\\") {
		return fmt.Errorf("mrt dump path %q: must not contain quotes, backslashes, %% or newlines", abs)
	}
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old mrt dump: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mrtDumpTimeout)
	defer cancel()
	if _, err := l.birdc(ctx, node, "mrt", "dump", "table", `"*"`, "to", `"`+abs+`"`); err != nil {
		return err
	}
	sum, err := waitMRT(ctx, abs)
	if err != nil {
		return fmt.Errorf("mrt dump of %s to %s: %w", node, abs, err)
	}
	l.log.Info("mrt dump", slog.String("node", node), slog.String("path", abs), slog.Int("records", sum.Records))
	return nil
}

// waitMRT waits until the file is a complete MRT dump whose size has not
// changed for three polls.
func waitMRT(ctx context.Context, path string) (MRTSummary, error) {
	var last int64 = -1
	stable := 0
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() > 0 && fi.Size() == last {
			stable++
		} else {
			stable = 0
		}
		if err == nil {
			last = fi.Size()
		}
		if stable >= 3 {
			b, err := os.ReadFile(path)
			if err != nil {
				return MRTSummary{}, fmt.Errorf("read: %w", err)
			}
			return CheckMRT(b)
		}
		select {
		case <-ctx.Done():
			return MRTSummary{}, fmt.Errorf("not complete (%d bytes): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CheckMRT checks that b is a well-formed MRT TABLE_DUMP_V2 file: it
// starts with a PEER_INDEX_TABLE, and every record's header and length
// fit. It returns the record counts.
func CheckMRT(b []byte) (MRTSummary, error) {
	var s MRTSummary
	if len(b) == 0 {
		return s, errors.New("mrt: empty file")
	}
	r := bytes.NewReader(b)
	for off := 0; r.Len() > 0; s.Records++ {
		var h struct {
			Time    uint32
			Type    uint16
			Subtype uint16
			Length  uint32
		}
		if err := binary.Read(r, binary.BigEndian, &h); err != nil {
			return s, fmt.Errorf("mrt: record %d at byte %d: short header: %w", s.Records, off, err)
		}
		if h.Type != mrtTableDumpV2 {
			return s, fmt.Errorf("mrt: record %d at byte %d: type %d, want %d (TABLE_DUMP_V2)", s.Records, off, h.Type, mrtTableDumpV2)
		}
		if s.Records == 0 && h.Subtype != mrtPeerIndexTable {
			return s, fmt.Errorf("mrt: first record has subtype %d, want %d (PEER_INDEX_TABLE)", h.Subtype, mrtPeerIndexTable)
		}
		if int64(h.Length) > int64(r.Len()) {
			return s, fmt.Errorf("mrt: record %d at byte %d: length %d, only %d bytes left", s.Records, off, h.Length, r.Len())
		}
		switch h.Subtype {
		case mrtPeerIndexTable:
			s.PeerTables++
		case mrtRIBIPv4Unicast:
			s.RIB4++
		case mrtRIBIPv6Unicast:
			s.RIB6++
		}
		_, _ = r.Seek(int64(h.Length), 1)
		off += mrtHeaderLen + int(h.Length)
	}
	return s, nil
}
